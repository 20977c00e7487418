use super::*;

const MS: u64 = 1_000_000;

fn limiter(requests: u32, per_ms: u64, burst: u32, key: RateKey) -> Limiter {
    Limiter::new(RateLimit {
        requests,
        per: Duration::from_millis(per_ms),
        burst,
        key,
    })
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

/// Admitted requests of a client sending one every `gap` ns from 0 to `until`.
fn admitted(l: &Limiter, client: Option<IpAddr>, gap: u64, until: u64) -> u64 {
    let h = HeaderMap::new();
    (0..=until / gap)
        .filter(|i| l.check_at(client, &h, i * gap) == Decision::Pass)
        .count() as u64
}

#[test]
fn a_flood_gets_the_rate_plus_the_burst() {
    // 20 per second, burst 5, a request every millisecond for 5 seconds.
    let l = limiter(20, 1000, 5, RateKey::ClientIp);
    let n = admitted(&l, ip("192.0.2.1"), MS, 5000 * MS);
    assert_eq!(n, 1 + 5 + 100, "the first, the burst, then one per 50 ms");
    // Without burst: one per interval exactly.
    let l = limiter(20, 1000, 0, RateKey::ClientIp);
    assert_eq!(admitted(&l, ip("192.0.2.1"), MS, 5000 * MS), 101);
}

#[test]
fn a_client_under_the_rate_is_never_limited() {
    let l = limiter(20, 1000, 0, RateKey::ClientIp);
    let n = admitted(&l, ip("192.0.2.1"), 50 * MS, 10_000 * MS);
    assert_eq!(n, 201, "every one of them");
}

#[test]
fn refusals_say_when_to_come_back_and_cost_nothing() {
    let l = limiter(2, 1000, 1, RateKey::ClientIp);
    let (h, c) = (HeaderMap::new(), ip("192.0.2.1"));
    assert_eq!(l.check_at(c, &h, 0), Decision::Pass);
    assert_eq!(l.check_at(c, &h, 0), Decision::Pass);
    let Decision::Limited { retry_after } = l.check_at(c, &h, 0) else {
        panic!("the third at once is over rate 2/s with burst 1");
    };
    assert_eq!(retry_after, Duration::from_millis(500));
    // Refused requests do not push the time further.
    assert_eq!(
        l.check_at(c, &h, 400 * MS),
        Decision::Limited {
            retry_after: Duration::from_millis(100)
        }
    );
    assert_eq!(l.check_at(c, &h, 500 * MS), Decision::Pass);
}

#[test]
fn keys_are_counted_apart() {
    let l = limiter(1, 1000, 0, RateKey::ClientIp);
    let h = HeaderMap::new();
    assert_eq!(l.check_at(ip("192.0.2.1"), &h, 0), Decision::Pass);
    assert_eq!(l.check_at(ip("192.0.2.2"), &h, 0), Decision::Pass);
    assert_ne!(l.check_at(ip("192.0.2.1"), &h, 0), Decision::Pass);
    assert_ne!(
        l.check_at(ip("::ffff:192.0.2.1"), &h, 0),
        Decision::Pass,
        "an IPv4-mapped address is the IPv4 client"
    );

    let l = limiter(
        1,
        1000,
        0,
        RateKey::Header(HeaderName::from_static("x-api-key")),
    );
    let key = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", v.parse().unwrap());
        h
    };
    assert_eq!(l.check_at(None, &key("a"), 0), Decision::Pass);
    assert_eq!(l.check_at(None, &key("b"), 0), Decision::Pass);
    assert_ne!(l.check_at(None, &key("a"), 0), Decision::Pass);
    // Requests without the header share one count.
    assert_eq!(l.check_at(None, &HeaderMap::new(), 0), Decision::Pass);
    assert_ne!(l.check_at(None, &HeaderMap::new(), 0), Decision::Pass);

    let l = limiter(1, 1000, 0, RateKey::Global);
    assert_eq!(l.check_at(ip("192.0.2.1"), &h, 0), Decision::Pass);
    assert_ne!(l.check_at(ip("192.0.2.2"), &h, 0), Decision::Pass);
    assert_eq!(l.check_at(ip("192.0.2.2"), &h, 1000 * MS), Decision::Pass);
    assert_eq!(l.keys(), 0, "global keeps no map");
}

#[test]
fn a_million_clients_stay_within_the_bound() {
    let l = limiter(10, 1000, 0, RateKey::ClientIp);
    let h = HeaderMap::new();
    // 1,000,000 distinct addresses within one second: none is idle yet.
    for i in 0..1_000_000u32 {
        let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        assert_eq!(l.check_at(Some(addr), &h, u64::from(i)), Decision::Pass);
    }
    assert!(l.keys() <= MAX_KEYS, "{} keys", l.keys());
    // Each entry is a u128 key and a u64 time (hashbrown: plus one control byte, at
    // most 8/7 of the slots used): the tables' capacity bounds the memory.
    let slots: usize = l.shards.iter().map(|s| s.lock().unwrap().capacity()).sum();
    let bytes = slots * (16 + 8 + 1) * 8 / 7;
    assert!(bytes <= 64 << 20, "{bytes} bytes");
    // Later, the idle ones go first when a shard fills up again.
    let later = 10_000 * MS;
    for i in 0..200_000u32 {
        let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
        assert_eq!(l.check_at(Some(addr), &h, later), Decision::Pass);
    }
    assert!(l.keys() <= MAX_KEYS);
}

#[test]
fn global_is_exact_across_threads() {
    let l = std::sync::Arc::new(limiter(1000, 1000, 99, RateKey::Global));
    let passed = std::sync::Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (l, passed) = (l.clone(), passed.clone());
            std::thread::spawn(move || {
                let h = HeaderMap::new();
                for _ in 0..1000 {
                    if l.check_at(None, &h, 0) == Decision::Pass {
                        passed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        passed.load(Ordering::Relaxed),
        100,
        "the first and 99 of burst at one instant"
    );
}

#[test]
fn without_redis_on_error_decides() {
    use crate::ratelimit::{OnError, Shared, SharedLink};
    let policy = RateLimit {
        requests: 1,
        per: Duration::from_secs(1),
        burst: 0,
        key: RateKey::ClientIp,
    };
    let h = HeaderMap::new();
    let decide = |on_error| {
        let settings = Shared {
            url: "redis://127.0.0.1:1".into(),
            timeout: Duration::from_millis(5),
            on_error,
        };
        let link = SharedLink::new(settings, std::sync::Arc::default()).unwrap();
        let l = Limiter::shared(policy.clone(), "/a", &link);
        link.record(false);
        (0..3)
            .map(|_| l.check_at(ip("192.0.2.1"), &h, 0) == Decision::Pass)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        decide(OnError::Local),
        [true, false, false],
        "the replica's own limit"
    );
    assert_eq!(decide(OnError::Allow), [true, true, true]);
    assert_eq!(decide(OnError::Deny), [false, false, false]);
}

#[test]
fn shared_counts_wait_for_redis_and_follow_its_answer() {
    use crate::ratelimit::{OnError, Shared, SharedLink};
    let settings = Shared {
        url: "redis://127.0.0.1:1".into(),
        timeout: Duration::from_millis(5),
        on_error: OnError::Local,
    };
    let link = SharedLink::new(settings, std::sync::Arc::default()).unwrap();
    let l = Limiter::shared(
        RateLimit {
            requests: 10,
            per: Duration::from_secs(1),
            burst: 1,
            key: RateKey::Global,
        },
        "/a",
        &link,
    );
    let h = HeaderMap::new();
    // Two at once pass (1 + burst), the third waits for time or Redis.
    assert_eq!(l.check_at(None, &h, 0), Decision::Pass);
    assert_eq!(l.check_at(None, &h, 0), Decision::Pass);
    assert_ne!(l.check_at(None, &h, 0), Decision::Pass);
    let batch = l.take_batch().expect("counts to send");
    assert_eq!(batch.keys.len(), 1);
    assert_eq!(
        (batch.keys[0].0, batch.keys[0].1),
        (0, 2),
        "global's key, two admitted"
    );
    assert_eq!(batch.interval_us, 100_000);
    assert!(batch.prefix.starts_with("gw:rl:"));
    assert!(l.take_batch().is_none(), "sent once");
    // Redis says the key is 2 s ahead (the other replicas were busy): refused for
    // now, whatever this replica counted.
    l.apply(&batch, Some(&[2_000_000]));
    let now = u64::try_from(l.epoch.elapsed().as_nanos()).unwrap();
    assert!(matches!(
        l.check_at(None, &h, now),
        Decision::Limited { retry_after } if retry_after > Duration::from_millis(1800)
    ));
    // The same route and policy on another replica uses the same Redis keys.
    let other = Limiter::shared(l.policy().clone(), "/a", &link);
    assert_eq!(other.check_at(None, &h, 0), Decision::Pass);
    assert_eq!(other.take_batch().unwrap().prefix, batch.prefix);
}

#[test]
fn a_busy_shared_key_far_under_its_rate_is_never_refused() {
    use crate::ratelimit::{OnError, Shared, SharedLink};
    let settings = Shared {
        url: "redis://127.0.0.1:1".into(),
        timeout: Duration::from_millis(5),
        on_error: OnError::Local,
    };
    let link = SharedLink::new(settings, std::sync::Arc::default()).unwrap();
    let policy = RateLimit {
        requests: 10_000_000,
        per: Duration::from_secs(1),
        burst: 0,
        key: RateKey::ClientIp,
    };
    let l = Limiter::shared(policy, "/a", &link);
    let h = HeaderMap::new();
    // 25,000 requests a second against 10,000,000: the admitted ones waiting to be
    // sent are spread over time, not counted as if at once.
    for i in 0..1000u64 {
        assert_eq!(
            l.check_at(ip("192.0.2.1"), &h, i * 40_000),
            Decision::Pass,
            "{i}"
        );
    }
    let batch = l.take_batch().unwrap();
    assert_eq!(batch.keys[0].1, 1000);
    // 100 more admitted while the call was out; then Redis answers that the key's time
    // is behind its clock (it spreads a batch over its span): this replica's own
    // time stands, and the next requests pass.
    for i in 1000..1100u64 {
        assert_eq!(l.check_at(ip("192.0.2.1"), &h, i * 40_000), Decision::Pass);
    }
    let tat = |l: &Limiter| {
        let shared = l.shared.as_ref().unwrap();
        shared
            .shards
            .iter()
            .find_map(|s| s.lock().unwrap().entries.values().next().map(|e| e.tat))
    };
    let before = tat(&l);
    l.apply_at(&batch, Some(&[-39_900]), 1100 * 40_000);
    assert_eq!(tat(&l), before);
    for i in 1100..1200u64 {
        let at = i * 40_000;
        assert_eq!(
            l.check_at(ip("192.0.2.1"), &h, at),
            Decision::Pass,
            "{i} after the answer"
        );
    }
}
