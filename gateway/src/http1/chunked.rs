//! The chunked transfer coding (RFC 9112 §7.1): a decoder that is a state machine over
//! byte slices (data handed back as ranges of the input, no copy and no allocation per
//! chunk, the same result however the input is split), with bounded chunk-size lines
//! and trailers, and the encoder's pieces.

use std::ops::Range;

use bytes::Bytes;
use http::HeaderMap;

use super::framing::FieldScan;
use super::head::header_map;
use super::Http1Error;

/// Limits on a chunked body's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedLimits {
    /// Bytes of one chunk-size line, extensions included, without its CRLF.
    pub max_line: usize,
    /// Bytes of the trailer section.
    pub max_trailers: usize,
    /// Trailer fields.
    pub max_trailer_fields: usize,
}

impl Default for ChunkedLimits {
    /// 1 KiB chunk-size lines, 8 KiB and 32 fields of trailers.
    fn default() -> Self {
        Self {
            max_line: 1024,
            max_trailers: 8 * 1024,
            max_trailer_fields: 32,
        }
    }
}

/// Trailer fields a decoder can hold (larger `max_trailer_fields` are capped to it).
const MAX_TRAILER_SLOTS: usize = 64;

/// What [`ChunkedDecoder::decode`] found in its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes: this range of the input.
    Data(Range<usize>),
    /// The input is used up (all framing): more is needed.
    More,
    /// The body ended (last chunk, trailers, final CRLF); bytes after it are not the body's.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first hex digit of a chunk size.
    Size,
    /// More hex digits.
    SizeDigits,
    /// Whitespace after the size, before `;` or the line end.
    AfterSize,
    /// A chunk extension, up to the line end.
    Extension,
    /// The LF of the size line.
    SizeLf,
    /// `size` more bytes of chunk data.
    Data,
    DataCr,
    DataLf,
    /// The start of a trailer line, or the final CRLF.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    /// The LF of the final CRLF.
    EndLf,
    Done,
}

/// Decodes one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// The size being read, then the data left in the chunk.
    size: u64,
    /// Bytes of the current size line.
    line: usize,
    /// The trailer section as received (allocated only when there is one).
    trailer_bytes: Vec<u8>,
    trailers: Option<HeaderMap>,
    limits: ChunkedLimits,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new(ChunkedLimits::default())
    }
}

impl ChunkedDecoder {
    pub fn new(limits: ChunkedLimits) -> Self {
        Self {
            state: State::Size,
            size: 0,
            line: 0,
            trailer_bytes: Vec::new(),
            trailers: None,
            limits,
        }
    }

    /// Decodes from the front of `input`: how many bytes it used, and what it found.
    /// Data comes back as soon as some is seen (a chunk split across reads comes in
    /// pieces); call again with the input after the used bytes (and more read).
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Decoded), Http1Error> {
        let mut used = 0;
        loop {
            match self.state {
                State::Done => return Ok((used, Decoded::Done)),
                State::Data => {
                    let available = input.len().saturating_sub(used);
                    if available == 0 {
                        return Ok((used, Decoded::More));
                    }
                    let n = usize::try_from(self.size).map_or(available, |s| s.min(available));
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok((used + n, Decoded::Data(used..used + n)));
                }
                _ => {}
            }
            let Some(&byte) = input.get(used) else {
                return Ok((used, Decoded::More));
            };
            used += 1;
            self.step(byte)?;
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The trailer fields, once done, if the body had any.
    pub fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.trailers.take()
    }

    /// One framing byte.
    fn step(&mut self, b: u8) -> Result<(), Http1Error> {
        let fail = |what| Err(Http1Error::InvalidChunk(what));
        if matches!(
            self.state,
            State::Size | State::SizeDigits | State::AfterSize | State::Extension
        ) {
            self.line += 1;
            if self.line > self.limits.max_line {
                return fail("chunk-size line too long");
            }
        }
        self.state = match (self.state, b) {
            (State::Size, _) => match hex(b) {
                Some(d) => {
                    self.size = d;
                    State::SizeDigits
                }
                None => return fail("missing chunk size"),
            },
            (State::SizeDigits, _) if hex(b).is_some() => {
                if self.size > u64::MAX >> 4 {
                    return fail("chunk size too large");
                }
                self.size = self.size << 4 | hex(b).unwrap_or_default();
                State::SizeDigits
            }
            (State::SizeDigits | State::AfterSize, b' ' | b'\t') => State::AfterSize,
            (State::SizeDigits | State::AfterSize, b';') => State::Extension,
            (State::SizeDigits | State::AfterSize | State::Extension, b'\r') => State::SizeLf,
            (State::SizeDigits | State::AfterSize, _) => return fail("invalid chunk size"),
            (State::Extension, b'\t' | b' '..=b'~' | 0x80..=0xff) => State::Extension,
            (State::Extension, _) => return fail("invalid byte in a chunk extension"),
            (State::SizeLf, b'\n') => {
                self.line = 0;
                if self.size == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            (State::SizeLf, _) => return fail("CR without LF in a chunk-size line"),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size,
            (State::DataCr | State::DataLf, _) => return fail("chunk data longer than its size"),
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart | State::TrailerLine, b'\n') => {
                return fail("LF without CR in the trailer section")
            }
            (State::TrailerStart | State::TrailerLine, _) => {
                self.trailer_byte(b)?;
                if b == b'\r' {
                    State::TrailerLf
                } else {
                    State::TrailerLine
                }
            }
            (State::TrailerLf, b'\n') => {
                self.trailer_byte(b)?;
                State::TrailerStart
            }
            (State::TrailerLf, _) => return fail("CR without LF in the trailer section"),
            (State::EndLf, b'\n') => {
                self.parse_trailers()?;
                State::Done
            }
            (State::EndLf, _) => return fail("CR without LF at the end of the body"),
            (State::Data | State::Done, _) => return fail("framing byte out of place"),
        };
        Ok(())
    }

    fn trailer_byte(&mut self, b: u8) -> Result<(), Http1Error> {
        if self.trailer_bytes.len() >= self.limits.max_trailers {
            return Err(Http1Error::TrailersTooLarge {
                limit: self.limits.max_trailers,
            });
        }
        self.trailer_bytes.push(b);
        Ok(())
    }

    fn parse_trailers(&mut self) -> Result<(), Http1Error> {
        if self.trailer_bytes.is_empty() {
            return Ok(());
        }
        let mut section = std::mem::take(&mut self.trailer_bytes);
        section.extend_from_slice(b"\r\n");
        let raw = Bytes::from(section);
        let max = self.limits.max_trailer_fields.min(MAX_TRAILER_SLOTS);
        let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILER_SLOTS];
        let slots = slots.get_mut(..max).unwrap_or_default();
        let fields = match httparse::parse_headers(&raw, slots) {
            Ok(httparse::Status::Complete((n, fields))) if n == raw.len() => fields,
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Http1Error::InvalidChunk("too many trailer fields"))
            }
            _ => return Err(Http1Error::InvalidChunk("invalid trailer field")),
        };
        let mut ignored = FieldScan::request();
        let map = header_map(&raw, fields, 0, &mut ignored, false)
            .map_err(|_| Http1Error::InvalidChunk("invalid trailer field"))?;
        self.trailers = Some(map);
        Ok(())
    }
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// The last chunk and an empty trailer section: the end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Writes the size line of a chunk of `len` bytes (not 0: that is the last chunk).
pub fn chunk_size_line(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(HEX[(len >> (4 * i)) & 0xf]);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the end of a chunked body with `trailers` (none: [`LAST_CHUNK`]).
pub fn last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    let Some(trailers) = trailers.filter(|t| !t.is_empty()) else {
        out.extend_from_slice(LAST_CHUNK);
        return;
    };
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        super::write::field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data, then the trailers and the bytes used at the end, or the error.
    pub(crate) type Outcome = (Vec<u8>, Result<(Option<HeaderMap>, usize), String>);

    /// Decodes `input` split at `splits`.
    pub(crate) fn run(input: &[u8], splits: &[usize]) -> Outcome {
        let mut decoder = ChunkedDecoder::default();
        let mut data = Vec::new();
        let mut pos = 0;
        let mut cuts: Vec<usize> = splits.iter().map(|&s| s.min(input.len())).collect();
        cuts.sort_unstable();
        cuts.push(input.len());
        for cut in cuts {
            while pos < cut {
                match decoder.decode(&input[pos..cut]) {
                    Err(e) => return (data, Err(e.to_string())),
                    Ok((n, Decoded::Data(r))) => {
                        data.extend_from_slice(&input[pos..cut][r]);
                        pos += n;
                    }
                    Ok((n, Decoded::More)) => {
                        pos += n;
                        break;
                    }
                    Ok((n, Decoded::Done)) => {
                        pos += n;
                        return (data, Ok((decoder.take_trailers(), pos)));
                    }
                }
            }
        }
        (data, Err("incomplete".into()))
    }

    #[test]
    fn a_body_with_extensions_and_trailers() {
        let body =
            b"5;name=value\r\nhello\r\n6 ; x\r\n world\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\nNEXT";
        let (data, end) = run(body, &[]);
        assert_eq!(data, b"hello world");
        let (trailers, used) = end.unwrap();
        assert_eq!(used, body.len() - 4, "the next message is not consumed");
        let trailers = trailers.unwrap();
        assert_eq!(trailers["x-sum"], "1");
        assert_eq!(trailers["x-b"], "2");
        // Every split point, and every byte apart, gives the same.
        for split in 0..body.len() {
            assert_eq!(run(body, &[split]), run(body, &[]), "split at {split}");
        }
        let every: Vec<usize> = (0..body.len()).collect();
        assert_eq!(run(body, &every), run(body, &[]));
    }

    #[test]
    fn sizes() {
        assert_eq!(run(b"0\r\n\r\n", &[]).1.unwrap(), (None, 5));
        assert_eq!(run(b"000\r\n\r\n", &[]).1.unwrap().1, 7);
        let big = b"A\r\n0123456789\r\n0\r\n\r\n";
        assert_eq!(run(big, &[]).0, b"0123456789");
        assert!(run(b"ffffffffffffffff\r\n", &[])
            .1
            .is_err_and(|e| e == "incomplete"));
        let over = b"10000000000000000\r\n";
        assert!(run(over, &[]).1.unwrap_err().contains("too large"));
    }

    #[test]
    fn broken_bodies() {
        let bad: [&[u8]; 13] = [
            b"\r\n",
            b"x\r\n",
            b"-1\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\rhello",
            b"5 5\r\n",
            b"5;a\nb\r\n",
            b"5;\x00\r\n",
            b"0\r\nX: 1\n\r\n",
            b"0\r\nBad Name: 1\r\n\r\n",
            b"0\r\n\rX",
        ];
        for body in bad {
            let (_, end) = run(body, &[]);
            let e = end.unwrap_err();
            assert!(e != "incomplete", "{}: accepted", body.escape_ascii());
        }
    }

    #[test]
    fn limits() {
        let long = format!("1;{}\r\n", "x".repeat(2000));
        assert!(run(long.as_bytes(), &[])
            .1
            .unwrap_err()
            .contains("too long"));
        let trailers = format!("0\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert!(run(trailers.as_bytes(), &[])
            .1
            .unwrap_err()
            .contains("trailer section larger"));
        let many: String = (0..40).map(|i| format!("X-{i}: 1\r\n")).collect();
        let body = format!("0\r\n{many}\r\n");
        assert!(run(body.as_bytes(), &[])
            .1
            .unwrap_err()
            .contains("too many"));
    }

    #[test]
    fn encoding() {
        let mut out = Vec::new();
        for len in [1usize, 15, 16, 255, 4096, 0x12345] {
            out.clear();
            chunk_size_line(&mut out, len);
            assert_eq!(out, format!("{len:x}\r\n").as_bytes());
        }
        out.clear();
        last_chunk(&mut out, None);
        assert_eq!(out, LAST_CHUNK);
        let mut t = HeaderMap::new();
        t.insert("x-sum", "1".parse().unwrap());
        out.clear();
        last_chunk(&mut out, Some(&t));
        assert_eq!(out, b"0\r\nx-sum: 1\r\n\r\n");
        let (_, end) = run(&out, &[]);
        assert_eq!(end.unwrap().0.unwrap(), t);
    }
}
