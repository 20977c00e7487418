//! Streaming encoders for gzip, br and zstd, over the compression libraries pingora
//! already links (flate2 on zlib-ng, brotli, zstd): output is appended to a buffer
//! the caller owns and grows by at most one step at a time, so a body of any size is
//! compressed in the memory of one encoder and one chunk.

use std::io;

use brotli::enc::encode::{
    BrotliEncoderCompressStream, BrotliEncoderCreateInstance, BrotliEncoderDestroyInstance,
    BrotliEncoderHasMoreOutput, BrotliEncoderIsFinished, BrotliEncoderOperation,
    BrotliEncoderParameter, BrotliEncoderSetParameter, BrotliEncoderStateStruct,
};
use brotli::enc::StandardAlloc;
use flate2::{Compress, CompressError, FlushCompress, Status};
use zstd::stream::raw::{CParameter, InBuffer, Operation, OutBuffer};

use super::{Algorithm, Levels};

/// How much the output buffer grows at a time.
const STEP: usize = 16 * 1024;
/// gzip: zlib's largest window (32 KiB; its state is then about 256 KiB).
const GZIP_WINDOW_BITS: u8 = 15;
/// br: a 256 KiB window (the library's default, 4 MiB, would be allocated per stream).
const BR_WINDOW_BITS: u32 = 18;
/// zstd: a 256 KiB window (level 1's default is 512 KiB).
const ZSTD_WINDOW_LOG: u32 = 18;

/// What can go wrong while compressing (nothing, short of a library bug or no memory).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("gzip compression failed")]
    Gzip(#[source] CompressError),
    #[error("zstd compression failed")]
    Zstd(#[source] io::Error),
    #[error("brotli compression failed")]
    Brotli,
}

/// One response body's encoder.
pub struct Encoder {
    inner: Inner,
}

enum Inner {
    Gzip(Box<Compress>),
    Brotli(Box<Brotli>),
    Zstd(Box<zstd::stream::raw::Encoder<'static>>),
}

struct Brotli {
    state: BrotliEncoderStateStruct<StandardAlloc>,
    /// The library writes into a slice: compressed bytes land here before the output.
    scratch: Box<[u8]>,
}

impl Drop for Brotli {
    fn drop(&mut self) {
        BrotliEncoderDestroyInstance(&mut self.state);
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Encoder").field(&self.algorithm()).finish()
    }
}

/// What a call asks of the library.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Take the input; emit what is ready.
    Write,
    /// Emit everything taken so far, decodable on its own.
    Flush,
    /// End the stream.
    Finish,
}

impl Encoder {
    /// A new stream of `algorithm` at its level in `levels`.
    pub fn new(algorithm: Algorithm, levels: &Levels) -> Result<Self, EncodeError> {
        let inner = match algorithm {
            Algorithm::Gzip => Inner::Gzip(Box::new(Compress::new_gzip(
                flate2::Compression::new(levels.gzip),
                GZIP_WINDOW_BITS,
            ))),
            Algorithm::Brotli => {
                let mut state = BrotliEncoderCreateInstance(StandardAlloc::default());
                let set = |s: &mut BrotliEncoderStateStruct<StandardAlloc>, p, v| {
                    BrotliEncoderSetParameter(s, p, v) != 0
                };
                let ok = set(
                    &mut state,
                    BrotliEncoderParameter::BROTLI_PARAM_QUALITY,
                    levels.br,
                ) && set(
                    &mut state,
                    BrotliEncoderParameter::BROTLI_PARAM_LGWIN,
                    BR_WINDOW_BITS,
                );
                let brotli = Brotli {
                    state,
                    scratch: vec![0; STEP / 2].into_boxed_slice(),
                };
                if !ok {
                    return Err(EncodeError::Brotli);
                }
                Inner::Brotli(Box::new(brotli))
            }
            Algorithm::Zstd => {
                let mut e =
                    zstd::stream::raw::Encoder::new(levels.zstd).map_err(EncodeError::Zstd)?;
                e.set_parameter(CParameter::WindowLog(ZSTD_WINDOW_LOG))
                    .map_err(EncodeError::Zstd)?;
                Inner::Zstd(Box::new(e))
            }
        };
        Ok(Self { inner })
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::Gzip(_) => Algorithm::Gzip,
            Inner::Brotli(_) => Algorithm::Brotli,
            Inner::Zstd(_) => Algorithm::Zstd,
        }
    }

    /// Compresses `input`, appending to `out` what the library emits (often nothing
    /// until it has a block's worth).
    pub fn write(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.run(Step::Write, input, out)
    }

    /// Appends to `out` everything written so far, so the client can decode it now
    /// (for a body that pauses, such as a stream of events); costs a little ratio.
    pub fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.run(Step::Flush, &[], out)
    }

    /// Ends the stream, appending its last bytes to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.run(Step::Finish, &[], out)
    }

    fn run(&mut self, step: Step, input: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match &mut self.inner {
            Inner::Gzip(c) => gzip(c, step, input, out).map_err(EncodeError::Gzip),
            Inner::Brotli(b) => brotli(b, step, input, out),
            Inner::Zstd(e) => zstd(e, step, input, out).map_err(EncodeError::Zstd),
        }
    }
}

/// Room for at least a little output.
fn make_room(out: &mut Vec<u8>) {
    if out.capacity() - out.len() < 64 {
        out.reserve(STEP);
    }
}

fn gzip(
    c: &mut Compress,
    step: Step,
    mut input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressError> {
    let flush = match step {
        Step::Write => FlushCompress::None,
        Step::Flush => FlushCompress::Sync,
        Step::Finish => FlushCompress::Finish,
    };
    loop {
        make_room(out);
        let before = c.total_in();
        let status = c.compress_vec(input, out, flush)?;
        input = input
            .get((c.total_in() - before) as usize..)
            .unwrap_or_default();
        // zlib is done with a call when it left output room unused.
        let done = match step {
            Step::Finish => status == Status::StreamEnd,
            _ => input.is_empty() && out.len() < out.capacity(),
        };
        if done {
            return Ok(());
        }
    }
}

fn brotli(b: &mut Brotli, step: Step, input: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let op = match step {
        Step::Write => BrotliEncoderOperation::BROTLI_OPERATION_PROCESS,
        Step::Flush => BrotliEncoderOperation::BROTLI_OPERATION_FLUSH,
        Step::Finish => BrotliEncoderOperation::BROTLI_OPERATION_FINISH,
    };
    let mut nop =
        |_: &mut brotli::interface::PredictionModeContextMap<brotli::InputReferenceMut<'_>>,
         _: &mut [brotli::interface::StaticCommand],
         _: brotli::InputPair<'_>,
         _: &mut StandardAlloc| ();
    let (mut avail_in, mut in_at) = (input.len(), 0);
    loop {
        let (mut avail_out, mut out_at) = (b.scratch.len(), 0);
        let ok = BrotliEncoderCompressStream(
            &mut b.state,
            op,
            &mut avail_in,
            input,
            &mut in_at,
            &mut avail_out,
            &mut b.scratch,
            &mut out_at,
            &mut None,
            &mut nop,
        );
        out.extend_from_slice(b.scratch.get(..out_at).unwrap_or_default());
        if ok <= 0 {
            return Err(EncodeError::Brotli);
        }
        let more = BrotliEncoderHasMoreOutput(&b.state) != 0;
        let done = match step {
            Step::Finish => BrotliEncoderIsFinished(&b.state) != 0,
            _ => avail_in == 0 && !more,
        };
        if done {
            return Ok(());
        }
    }
}

fn zstd(
    e: &mut zstd::stream::raw::Encoder<'static>,
    step: Step,
    input: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut input = InBuffer::around(input);
    loop {
        make_room(out);
        let at = out.len();
        let mut output = OutBuffer::around_pos(out, at);
        let left = match step {
            Step::Write => {
                e.run(&mut input, &mut output)?;
                0
            }
            Step::Flush => e.flush(&mut output)?,
            Step::Finish => e.finish(&mut output, true)?,
        };
        let room = output.pos() < output.capacity();
        let done = match step {
            Step::Write => input.pos() == input.src.len() && room,
            _ => left == 0,
        };
        if done {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests;
