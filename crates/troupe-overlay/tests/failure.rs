//! Properties of the phi-accrual failure detector.

use std::time::Duration;

use proptest::prelude::*;
use troupe_overlay::{PhiAccrualConfig, PhiAccrualDetector};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the history, phi never decreases while the peer stays silent.
    #[test]
    fn phi_grows_monotonically_with_silence(
        intervals in prop::collection::vec(1u64..5_000, 1..300),
        probes in prop::collection::vec(0u64..120_000, 2..60),
    ) {
        let mut d = PhiAccrualDetector::new(PhiAccrualConfig::default());
        let mut t = 0;
        d.heartbeat(&0u8, ms(t));
        for i in &intervals {
            t += i;
            d.heartbeat(&0u8, ms(t));
        }
        let mut probes = probes;
        probes.sort_unstable();
        let mut prev = -1.0f64;
        for p in probes {
            let phi = d.phi(&0, ms(t + p));
            prop_assert!(phi.is_finite() && phi >= 0.0);
            prop_assert!(phi >= prev, "phi fell from {} to {} at +{} ms", prev, phi, p);
            prev = phi;
        }
        // And a long enough silence is always suspected.
        prop_assert!(!d.is_available(&0, ms(t + 3_600_000)));
    }

    /// A peer beating steadily at any rate keeps phi low at each arrival.
    #[test]
    fn steady_heartbeats_keep_phi_low(period in 100u64..5_000, beats in 10usize..400) {
        let mut d = PhiAccrualDetector::new(PhiAccrualConfig {
            first_heartbeat_estimate: ms(period),
            ..PhiAccrualConfig::default()
        });
        let mut t = 0;
        for _ in 0..beats {
            d.heartbeat(&1u8, ms(t));
            t += period;
            // Just before the next beat is due.
            prop_assert!(d.phi(&1, ms(t)) < 1.0, "phi {} at period {}", d.phi(&1, ms(t)), period);
        }
    }

    /// A live peer whose heartbeats jitter a lot (0.5-1.5 s around 1 s, now and then a 2.5 s
    /// hiccup) is never suspected at the defaults.
    #[test]
    fn jittery_live_peer_is_not_suspected_at_defaults(
        jitter in prop::collection::vec((500u64..1_500, any::<u8>()), 50..500),
    ) {
        let mut d = PhiAccrualDetector::new(PhiAccrualConfig::default());
        let mut t = 0;
        d.heartbeat(&2u8, ms(t));
        for (gap, roll) in jitter {
            let gap = if roll < 8 { 2_500 } else { gap };
            // Check throughout the gap, not only at arrival.
            for probe in [gap / 2, gap] {
                prop_assert!(d.is_available(&2, ms(t + probe)), "suspected after {} ms (phi {})", probe, d.phi(&2, ms(t + probe)));
            }
            t += gap;
            d.heartbeat(&2u8, ms(t));
        }
    }
}

#[test]
fn a_dead_peer_is_suspected_within_seconds_at_defaults() {
    let mut d = PhiAccrualDetector::new(PhiAccrualConfig::default());
    for i in 0..30 {
        d.heartbeat(&3u8, ms(i * 1_000));
    }
    let last = ms(29_000);
    let suspected_after =
        (0..20_000u64).step_by(10).find(|p| !d.is_available(&3, last + ms(*p))).map(ms).expect("suspected");
    // Mean 1 s + 3 s acceptable pause, 100 ms minimum deviation: a little over 4 s.
    assert!(suspected_after > ms(4_000) && suspected_after < ms(6_000), "{suspected_after:?}");
    // A lower threshold suspects sooner.
    let mut eager = PhiAccrualDetector::new(PhiAccrualConfig { threshold: 1.0, ..PhiAccrualConfig::default() });
    for i in 0..30 {
        eager.heartbeat(&3u8, ms(i * 1_000));
    }
    let eager_after =
        (0..20_000u64).step_by(10).find(|p| !eager.is_available(&3, last + ms(*p))).map(ms).expect("suspected");
    assert!(eager_after < suspected_after);
}
