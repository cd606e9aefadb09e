//! The laws every CRDT must satisfy, as functions over states from one history.

use super::{Run, Subject};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use troupe_crdt::{Encode, Threshold};

type Checked = Result<(), TestCaseError>;

/// Join is commutative, associative and idempotent, bottom is its identity, and `leq` is the
/// order the join induces; strict inflation and threshold reads agree with it.
pub fn lattice<S: Subject>(a: &S, b: &S, c: &S) -> Checked {
    prop_assert_eq!(a.join(b), b.join(a), "commutative");
    prop_assert_eq!(a.join(b).join(c), a.join(&b.join(c)), "associative");
    prop_assert_eq!(a.join(a), a.clone(), "idempotent");
    prop_assert_eq!(S::bottom().join(a), a.clone(), "bottom is the identity");
    prop_assert!(S::bottom().is_bottom());
    prop_assert_eq!(a.is_bottom(), *a == S::bottom());
    let ab = a.join(b);
    prop_assert_eq!(a.leq(b), ab == *b, "leq is the join order");
    prop_assert!(a.leq(&ab) && b.leq(&ab), "join is an upper bound");
    prop_assert!(a.is_inflation(&ab));
    prop_assert_eq!(a.is_strict_inflation(&ab), ab != *a, "strict inflation");
    prop_assert!(Threshold::Reached(a.clone()).is_met(&ab));
    prop_assert_eq!(Threshold::Strict(a.clone()).is_met(&ab), ab != *a);
    prop_assert_eq!(Threshold::Reached(ab.clone()).is_met(a), ab == *a);
    // merge (in place) and join agree.
    let mut m = a.clone();
    m.merge(b);
    prop_assert_eq!(m, ab);
    Ok(())
}

/// Every operation is an inflation, its delta is below the result and joins to it
/// (`x ⊔ δ(x) == m(x)`), `delta_mutate` and `apply` agree, a refused operation changes
/// nothing, and the sequential specification holds.
pub fn mutators<S: Subject>(run: &Run<S>) -> Checked {
    for step in &run.steps {
        let pure = step.before.delta_mutate(step.op.clone(), &step.replica);
        match (&step.outcome, pure) {
            (Ok(delta), Ok(pure)) => {
                prop_assert_eq!(delta, &pure, "apply returns the delta of delta_mutate");
                prop_assert_eq!(step.before.join(delta), step.after.clone(), "x ⊔ δ(x) == m(x)");
                prop_assert!(step.before.is_inflation(&step.after), "mutation is an inflation");
                prop_assert!(delta.leq(&step.after), "δ ⊑ m(x)");
                if let Err(msg) = S::check_post(&step.before, &step.op, &step.after) {
                    return Err(TestCaseError::fail(msg));
                }
            }
            (Err(e), Err(pure)) => {
                prop_assert_eq!(e, &pure);
                prop_assert_eq!(&step.before, &step.after, "a refused op changes nothing");
            }
            (outcome, pure) => {
                return Err(TestCaseError::fail(format!("apply gave {outcome:?} but delta_mutate gave {pure:?}")))
            }
        }
    }
    Ok(())
}

/// The join decomposition joins back to the state, has no bottom and no redundant element.
pub fn decomposition<S: Subject>(a: &S) -> Checked {
    let parts = a.join_decomposition();
    let joined = parts.iter().fold(S::bottom(), |acc, p| acc.join(p));
    prop_assert_eq!(&joined, a, "the join of the decomposition is the state");
    for (i, part) in parts.iter().enumerate() {
        prop_assert!(!part.is_bottom(), "bottom in the decomposition");
        prop_assert!(part.leq(a));
        let others = parts.iter().enumerate().filter(|(j, _)| *j != i).fold(S::bottom(), |acc, (_, p)| acc.join(p));
        prop_assert!(!part.leq(&others), "element {} is redundant: {:?}", i, part);
    }
    Ok(())
}

/// `delta(a, digest(b)) ⊔ b == a ⊔ b`, and the delta is below `a`.
pub fn delta_sync<S: Subject>(a: &S, b: &S) -> Checked {
    let digest = b.digest();
    let delta = a.delta(&digest);
    prop_assert_eq!(delta.join(b), a.join(b), "delta(a, digest(b)) ⊔ b == a ⊔ b");
    prop_assert!(delta.leq(a), "delta ⊑ a");
    prop_assert!(a.delta(&a.digest()).join(a) == *a);
    // The digest travels too.
    let bytes = digest.to_bytes().map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(S::Digest::from_bytes(&bytes).ok(), Some(digest));
    Ok(())
}

/// Encoding round-trips, `encoded_len` is exact, and damaged bytes never panic.
pub fn codec<S: Subject>(a: &S, flip: usize) -> Checked {
    let bytes = a.to_bytes().map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(a.encoded_len().ok(), Some(bytes.len()));
    let decoded = S::from_bytes(&bytes).ok();
    prop_assert_eq!(decoded.as_ref(), Some(a), "round trip");
    // Truncations and a flipped byte decode to an error or to some state, without panicking.
    for cut in 0..bytes.len() {
        let _ = S::from_bytes(&bytes[..cut]);
    }
    if !bytes.is_empty() {
        let mut damaged = bytes.clone();
        let i = flip % damaged.len();
        damaged[i] ^= 0x5a;
        if let Ok(decoded) = S::from_bytes(&damaged) {
            // Whatever decodes must still behave as a lattice element.
            let _ = decoded.join(a);
        }
    }
    let mut extended = bytes;
    extended.push(0);
    prop_assert!(S::from_bytes(&extended).is_err(), "trailing bytes are rejected");
    Ok(())
}
