//! The task that carries the shared counts to Redis and back: every tick, one script
//! call (in one pipeline) for all the busy keys of every route, within `timeout`.

use std::sync::{Arc, Weak};

use redis::aio::MultiplexedConnection;

use super::{SharedLink, TICK};
use crate::routes::filters::rate_limit::Batch;

/// Most keys in one script call (a pipeline carries several when more are busy).
const KEYS_PER_CALL: usize = 512;

/// Adds each key's admitted count to its GCRA time, as requests spread over the span
/// before the call in which the replica admitted them (Redis's clock, so no replica's
/// clock matters), and answers how far ahead of now each time is, in microseconds.
/// ARGV: the interval in microseconds, then per key its count and span in microseconds.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[2 * i])
  local span = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now - span then tat = now - span end
  tat = tat + n * interval
  if tat > now then
    redis.call('SET', key, tat, 'PX', math.floor((tat - now) / 1000) + 1000)
  end
  out[i] = tat - now
end
return out
";

/// Starts the task on `runtime`; it ends when `link` is no longer used.
pub fn start(link: &Arc<SharedLink>, runtime: &tokio::runtime::Handle) {
    runtime.spawn(run(Arc::downgrade(link)));
}

async fn run(link: Weak<SharedLink>) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(link) = link.upgrade() else {
            return;
        };
        let limiters = link.limiters();
        let batches: Vec<_> = limiters
            .iter()
            .filter_map(|l| l.take_batch().map(|b| (l.clone(), b)))
            .collect();
        // While Redis is down, a call is tried every tick even without busy keys, so
        // that sharing resumes as soon as it answers.
        if batches.is_empty() && link.is_up() {
            continue;
        }
        let timeout = link.settings.timeout;
        let answer = tokio::time::timeout(timeout, call(&link, &mut conn, &batches)).await;
        let answers = match answer {
            Ok(Ok(answers)) => Some(answers),
            Ok(Err(error)) => {
                tracing::debug!(%error, "shared rate limits: Redis call failed");
                conn = None;
                None
            }
            Err(_) => {
                tracing::debug!(?timeout, "shared rate limits: Redis call timed out");
                conn = None;
                None
            }
        };
        link.record(answers.is_some());
        for (i, (limiter, batch)) in batches.iter().enumerate() {
            let ahead = answers.as_ref().and_then(|a| a.get(i)).map(Vec::as_slice);
            limiter.apply(batch, ahead);
        }
    }
}

/// One pipeline of script calls for `batches` (a `PING` when there are none); the
/// answers per batch.
async fn call(
    link: &SharedLink,
    conn: &mut Option<MultiplexedConnection>,
    batches: &[(Arc<crate::routes::filters::rate_limit::Limiter>, Batch)],
) -> redis::RedisResult<Vec<Vec<i64>>> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(link.client.get_multiplexed_async_connection().await?),
    };
    if batches.is_empty() {
        redis::cmd("PING").query_async::<()>(c).await?;
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    let mut calls_per_batch = Vec::with_capacity(batches.len());
    for (_, batch) in batches {
        let chunks = batch.keys.chunks(KEYS_PER_CALL);
        calls_per_batch.push(chunks.len());
        for chunk in batch.keys.chunks(KEYS_PER_CALL) {
            let cmd = pipe.cmd("EVAL").arg(SCRIPT).arg(chunk.len());
            for (key, _, _) in chunk {
                cmd.arg(format!("{}{key:032x}", batch.prefix));
            }
            cmd.arg(batch.interval_us);
            for (_, n, span_us) in chunk {
                cmd.arg(*n).arg(*span_us);
            }
        }
    }
    let replies: Vec<Vec<i64>> = pipe.query_async(c).await?;
    let mut replies = replies.into_iter();
    Ok(calls_per_batch
        .into_iter()
        .map(|calls| replies.by_ref().take(calls).flatten().collect())
        .collect())
}
