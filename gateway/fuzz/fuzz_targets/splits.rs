//! The ways the HTTP/1 targets cut their input into reads: all at once, one byte per
//! read, pseudo-random pieces (drawn from the input itself, so a crash reproduces), and
//! two halves. A parser must give the same result for each.

/// Cut points (sorted, inside the input) of each way to split `data`.
pub fn schedules(data: &[u8]) -> Vec<Vec<usize>> {
    let len = data.len();
    let mut all = vec![Vec::new(), vec![len / 2]];
    if len <= 4096 {
        all.push((1..len).collect());
    }
    let mut state = data
        .iter()
        .take(64)
        .fold(len as u64 ^ 0x9e37_79b9_7f4a_7c15, |s, &b| {
            (s.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
        | 1;
    let mut cuts = Vec::new();
    let mut at = 0;
    loop {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        at += 1 + (state % 61) as usize;
        if at >= len {
            break;
        }
        cuts.push(at);
    }
    all.push(cuts);
    all
}

/// The pieces of `data` cut at `cuts`, the last one running to the end.
pub fn pieces<'a>(data: &'a [u8], cuts: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let ends = cuts.iter().copied().chain(std::iter::once(data.len()));
    let mut from = 0;
    ends.map(move |end| {
        let piece = &data[from..end];
        from = end;
        piece
    })
}
