//! Encoder round trips through real decoders: the libraries' own, and the Debian
//! `gzip`, `brotli` and `zstd` commands.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use super::Encoder;
use crate::routes::filters::compression::{Algorithm, DEFAULT_LEVELS};

/// A JSON-like body: repetitive, as API responses are.
fn json(len: usize) -> Vec<u8> {
    let mut body = b"[".to_vec();
    let mut i = 0u64;
    while body.len() < len {
        let item = format!(
            "{{\"id\":{i},\"name\":\"item-{}\",\"price\":{}.{:02},\"tags\":[\"a{}\",\"b\"],\"ok\":{}}},",
            i * 7919 % 1000,
            i % 97,
            i % 100,
            i % 13,
            i % 2 == 0
        );
        body.extend_from_slice(item.as_bytes());
        i += 1;
    }
    body.truncate(len);
    body
}

/// Bytes that do not compress (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `body` compressed with `alg`, fed in `chunk`-sized writes.
fn compress(alg: Algorithm, body: &[u8], chunk: usize) -> Vec<u8> {
    let mut e = Encoder::new(alg, &DEFAULT_LEVELS).unwrap();
    let mut out = Vec::new();
    for piece in body.chunks(chunk) {
        e.write(piece, &mut out).unwrap();
    }
    e.finish(&mut out).unwrap();
    out
}

fn decode(alg: Algorithm, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match alg {
        Algorithm::Gzip => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        Algorithm::Brotli => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Algorithm::Zstd => out = zstd::stream::decode_all(data).unwrap(),
    }
    out
}

#[test]
fn round_trips_through_the_libraries_decoders() {
    for alg in Algorithm::ALL {
        for body in [json(64 * 1024), noise(100_000), b"x".to_vec(), Vec::new()] {
            for chunk in [1000, 16 * 1024, 1 << 20] {
                let packed = compress(alg, &body, chunk);
                assert_eq!(
                    decode(alg, &packed),
                    body,
                    "{alg:?}, {} bytes in {chunk}",
                    body.len()
                );
            }
        }
        let body = json(64 * 1024);
        assert!(
            compress(alg, &body, 16 * 1024).len() < body.len() / 4,
            "{alg:?} compresses JSON"
        );
    }
}

#[test]
fn round_trips_through_the_debian_commands() {
    let body = json(300_000);
    for (alg, cmd) in [
        (Algorithm::Gzip, "gzip"),
        (Algorithm::Brotli, "brotli"),
        (Algorithm::Zstd, "zstd"),
    ] {
        let packed = compress(alg, &body, 16 * 1024);
        let mut child = Command::new(cmd)
            .args(["-d", "-c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd}: {e} (apt-get install {cmd})"));
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&packed));
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(
            output.status.success(),
            "{cmd} -d: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.stdout == body,
            "{cmd} -d gave {} bytes, want {}",
            output.stdout.len(),
            body.len()
        );
    }
}

#[test]
fn a_flush_makes_everything_so_far_decodable() {
    let body = json(40_000);
    let (first, second) = body.split_at(25_000);
    for alg in Algorithm::ALL {
        let mut e = Encoder::new(alg, &DEFAULT_LEVELS).unwrap();
        let mut out = Vec::new();
        e.write(first, &mut out).unwrap();
        e.flush(&mut out).unwrap();
        let flushed = out.len();
        let mut partial = Vec::new();
        match alg {
            Algorithm::Gzip => {
                let mut d = flate2::Decompress::new_gzip(15);
                partial.reserve(first.len() + 64);
                d.decompress_vec(&out, &mut partial, flate2::FlushDecompress::Sync)
                    .unwrap();
            }
            Algorithm::Brotli => {
                // The stream has no end yet: the reader gives what it decoded, then fails.
                let _ = brotli::Decompressor::new(&out[..], 4096).read_to_end(&mut partial);
            }
            Algorithm::Zstd => {
                let mut d = zstd::stream::write::Decoder::new(Vec::new()).unwrap();
                d.write_all(&out).unwrap();
                d.flush().unwrap();
                partial = d.get_ref().clone();
            }
        }
        assert!(
            partial == first,
            "{alg:?}: {} of {} bytes after a flush",
            partial.len(),
            first.len()
        );
        e.write(second, &mut out).unwrap();
        e.finish(&mut out).unwrap();
        assert!(out.len() > flushed);
        assert_eq!(
            decode(alg, &out),
            body,
            "{alg:?}: the stream goes on after a flush"
        );
    }
}

#[test]
fn ten_mebibytes_stream_through_a_bounded_buffer() {
    // The request path drains the output after each chunk: it never holds more than
    // one chunk's output, however long the body.
    let chunk = json(16 * 1024);
    for alg in Algorithm::ALL {
        let mut e = Encoder::new(alg, &DEFAULT_LEVELS).unwrap();
        let mut out = Vec::new();
        let mut sent = Vec::new();
        let mut largest = 0;
        for _ in 0..(10 << 20) / chunk.len() {
            e.write(&chunk, &mut out).unwrap();
            largest = largest.max(out.capacity());
            sent.extend_from_slice(&out);
            out.clear();
        }
        e.finish(&mut out).unwrap();
        sent.extend_from_slice(&out);
        assert!(
            largest <= 64 * 1024,
            "{alg:?}: output buffer grew to {largest}"
        );
        let back = decode(alg, &sent);
        assert_eq!(back.len(), 10 << 20);
        assert!(back.chunks(chunk.len()).all(|c| c == chunk), "{alg:?}");
    }
}
