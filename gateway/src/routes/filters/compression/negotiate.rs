//! `Accept-Encoding` negotiation (RFC 9110 §12.5.3): the coding with the highest
//! q-value among those the gateway has, ties broken by the configured order.

use super::Algorithm;

/// A q-value in thousandths (`q=0.5` is 500; no `q` is 1000).
type Weight = u16;

/// The coding to use, from `algorithms` (the server's preference order), for a request
/// whose `Accept-Encoding` fields are `fields`; `None`: send the response unencoded.
///
/// A coding is acceptable when listed with q > 0, or when `*` is (with q > 0) and the
/// coding is not listed itself; `x-gzip` is `gzip`. No field, or an empty one: none.
pub fn negotiate<'a>(
    fields: impl Iterator<Item = &'a [u8]>,
    algorithms: &[Algorithm],
) -> Option<Algorithm> {
    // The highest weight each coding is listed with, and `*`'s.
    let mut listed: [Option<Weight>; Algorithm::ALL.len()] = [None; Algorithm::ALL.len()];
    let mut star: Option<Weight> = None;
    for (coding, q) in fields.flat_map(elements) {
        if coding == b"*" {
            star = star.max(Some(q));
        } else if let Some(i) = Algorithm::ALL.iter().position(|a| a.names(coding)) {
            listed[i] = listed[i].max(Some(q));
        }
    }
    let mut best: Option<(Weight, Algorithm)> = None;
    for &alg in algorithms {
        let q = listed[alg as usize].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, alg));
        }
    }
    best.map(|(_, alg)| alg)
}

/// The `(coding, weight)` elements of one field value; a malformed weight is 0.
fn elements(field: &[u8]) -> impl Iterator<Item = (&[u8], Weight)> {
    field.split(|&b| b == b',').filter_map(|element| {
        let mut parts = element.split(|&b| b == b';');
        let coding = parts.next()?.trim_ascii();
        if coding.is_empty() {
            return None;
        }
        let mut q = 1000;
        for param in parts {
            let param = param.trim_ascii();
            let Some(eq) = param.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (name, value) = (param[..eq].trim_ascii(), param[eq + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"q") {
                q = qvalue(value).unwrap_or(0);
            }
        }
        Some((coding, q))
    })
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`.
fn qvalue(v: &[u8]) -> Option<Weight> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &v[..0]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: Weight = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| Weight::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Algorithm::{Brotli, Gzip, Zstd};

    const ALL: [Algorithm; 3] = [Zstd, Brotli, Gzip];

    fn pick(fields: &[&str], algorithms: &[Algorithm]) -> Option<Algorithm> {
        negotiate(fields.iter().map(|f| f.as_bytes()), algorithms)
    }

    #[test]
    fn highest_q_then_the_configured_order() {
        assert_eq!(
            pick(&["gzip, deflate, br, zstd"], &ALL),
            Some(Zstd),
            "ties: configured order"
        );
        assert_eq!(pick(&["gzip, deflate, br"], &ALL), Some(Brotli));
        assert_eq!(pick(&["gzip, deflate, br"], &[Gzip, Brotli]), Some(Gzip));
        assert_eq!(
            pick(&["gzip;q=1.0, br;q=0.9, zstd;q=0.8"], &ALL),
            Some(Gzip)
        );
        assert_eq!(pick(&["br;q=0.001, gzip;q=0"], &ALL), Some(Brotli));
        assert_eq!(
            pick(&["GZIP"], &ALL),
            Some(Gzip),
            "codings are case-insensitive"
        );
        assert_eq!(pick(&["x-gzip"], &ALL), Some(Gzip));
        assert_eq!(pick(&["gzip", "br"], &ALL), Some(Brotli), "fields combine");
        assert_eq!(pick(&[" br ; q = 0.5 ,gzip;Q=0.4"], &ALL), Some(Brotli));
    }

    #[test]
    fn zero_and_stars() {
        assert_eq!(pick(&["gzip;q=0"], &ALL), None);
        assert_eq!(pick(&["identity"], &ALL), None);
        assert_eq!(
            pick(&["identity;q=0"], &ALL),
            None,
            "nothing better to offer"
        );
        assert_eq!(pick(&["*"], &ALL), Some(Zstd));
        assert_eq!(pick(&["*;q=0"], &ALL), None);
        assert_eq!(pick(&["*, zstd;q=0"], &ALL), Some(Brotli), "listed beats *");
        assert_eq!(pick(&["*;q=0.5, gzip"], &ALL), Some(Gzip));
        assert_eq!(pick(&["*;q=0, gzip;q=0.1"], &ALL), Some(Gzip));
        assert_eq!(pick(&["identity;q=0, *;q=0"], &ALL), None);
    }

    #[test]
    fn nothing_and_nonsense() {
        assert_eq!(pick(&[], &ALL), None, "no Accept-Encoding: unencoded");
        assert_eq!(pick(&[""], &ALL), None);
        assert_eq!(pick(&["deflate, compress"], &ALL), None);
        assert_eq!(pick(&["gzip;q=2"], &ALL), None, "a malformed q is 0");
        assert_eq!(pick(&["gzip;q=0.5555"], &ALL), None);
        assert_eq!(pick(&["gzip;q=1.001"], &ALL), None);
        assert_eq!(pick(&["gzip;q=", "br;q=x"], &ALL), None);
        assert_eq!(
            pick(&["gzip;level=9"], &ALL),
            Some(Gzip),
            "other parameters are ignored"
        );
        assert_eq!(pick(&[",,gzip,"], &ALL), Some(Gzip));
        assert_eq!(pick(&["gzip"], &[]), None);
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue(b"1"), Some(1000));
        assert_eq!(qvalue(b"1.000"), Some(1000));
        assert_eq!(qvalue(b"0.5"), Some(500));
        assert_eq!(qvalue(b"0.05"), Some(50));
        assert_eq!(qvalue(b"0.005"), Some(5));
        assert_eq!(qvalue(b"0."), Some(0));
        assert_eq!(qvalue(b"0"), Some(0));
        for bad in [&b""[..], b".5", b"1.5", b"01", b"0.-1", b"2"] {
            assert_eq!(qvalue(bad), None, "{bad:?}");
        }
    }
}
