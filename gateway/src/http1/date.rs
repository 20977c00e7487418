//! The `Date` header's value (IMF-fixdate, RFC 9110 §5.6.7), formatted once a second per
//! thread: each response copies 29 cached bytes, no lock and no formatting.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

thread_local! {
    /// The second last formatted and its text.
    static CACHED: Cell<(u64, [u8; DATE_LEN])> = const { Cell::new((u64::MAX, [0; DATE_LEN])) };
}

/// The current time as an IMF-fixdate.
pub fn now() -> [u8; DATE_LEN] {
    at(SystemTime::now())
}

/// `time` as an IMF-fixdate, from this thread's cache when it is the same second.
pub fn at(time: SystemTime) -> [u8; DATE_LEN] {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (cached, text) = CACHED.get();
    if cached == secs {
        return text;
    }
    let text = format(secs);
    CACHED.set((secs, text));
    text
}

/// Formats `secs` since the epoch (years past 9999 are written as 9999's last second:
/// the format has four digits).
fn format(secs: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    // 9999-12-31T23:59:59Z
    let secs = secs.min(253_402_300_799);
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil(days);
    let mut out = [0u8; DATE_LEN];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(slot) = out.get_mut(at..at + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
    };
    put(0, DAYS[(days % 7) as usize]);
    put(3, b", ");
    put(5, &two(day));
    put(7, b" ");
    put(8, MONTHS[(month - 1) as usize % 12]);
    put(11, b" ");
    put(12, &two(year / 100));
    put(14, &two(year % 100));
    put(16, b" ");
    put(17, &two(day_secs / 3600));
    put(19, b":");
    put(20, &two(day_secs / 60 % 60));
    put(22, b":");
    put(23, &two(day_secs % 60));
    put(25, b" GMT");
    out
}

/// Two decimal digits of `n` (below 100).
fn two(n: u64) -> [u8; 2] {
    [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]
}

/// (year, month 1-12, day 1-31) of a day counted from 1970-01-01, in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`, for days since the epoch
/// only: no negative years).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn text(secs: u64) -> String {
        String::from_utf8(at(UNIX_EPOCH + Duration::from_secs(secs)).to_vec()).unwrap()
    }

    #[test]
    fn imf_fixdates() {
        assert_eq!(text(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(text(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(text(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(text(1_798_761_599), "Thu, 31 Dec 2026 23:59:59 GMT");
        assert_eq!(text(u64::MAX / 2), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn the_cache_follows_the_second() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(at(t), at(t + Duration::from_millis(999)));
        assert_ne!(at(t), at(t + Duration::from_secs(1)));
        assert_eq!(&at(t)[..], b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(now().len(), DATE_LEN);
    }
}
