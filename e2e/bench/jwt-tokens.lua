-- wrk script of compare.sh's gw-jwt-new: each request carries the next of the tokens
-- in $JWT_TOKENS (one per line, more than the gateway keeps verified), so every token
-- is one the gateway has not verified lately: its signature is checked each time.
local tokens = {}
for line in io.lines(os.getenv("JWT_TOKENS")) do
  tokens[#tokens + 1] = "Bearer " .. line
end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format(nil, nil, { ["Authorization"] = tokens[i] })
end
