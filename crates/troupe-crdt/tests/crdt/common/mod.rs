//! Shared test machinery: per-type operation decoders and sequential specs ([`Subject`]),
//! random multi-replica histories ([`world`]), and the law checks ([`laws`]).
//!
//! Histories are generated as raw, type-independent codes that each type decodes into its own
//! operations (like `arbitrary`'s `Unstructured`), and properties run through one
//! `&dyn Fn` entry point ([`property`]). Proptest's runner and shrinker are then compiled once
//! rather than once per CRDT type, which keeps the release build of the tests short.

pub mod laws;
pub mod subjects;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{TestCaseError, TestRunner};
use std::fmt::Debug;
use troupe_crdt::{Crdt, Query, UpdateError};

/// Replica ids in tests.
pub type Rep = u8;

/// Replicas in a generated history.
pub const REPLICAS: usize = 3;

/// A CRDT under test: how to decode its operations and what they must do sequentially.
pub trait Subject: Crdt<Rep> + Query<Value: Clone + PartialEq + Debug> {
    /// The operation a random code stands for, over a small domain so that operations collide.
    /// Code 0 is the simplest operation (proptest shrinks codes towards 0).
    fn op(code: u32) -> Self::Op;

    /// The value after a *successful* `op` on a state whose value was `before`, or `None` when
    /// the value alone does not determine it.
    fn expected(before: &Self::Value, op: &Self::Op) -> Option<Self::Value>;

    /// Whether two values are the same value (maps override it to ignore bottom entries).
    fn same_value(a: &Self::Value, b: &Self::Value) -> bool {
        a == b
    }

    /// The sequential specification, checked after every successful local operation.
    fn check_post(before: &Self, op: &Self::Op, after: &Self) -> Result<(), String> {
        match Self::expected(&before.query(), op) {
            Some(want) if !Self::same_value(&want, &after.query()) => {
                Err(format!("{op:?} on {:?} gave {:?}, expected {want:?}", before.query(), after.query()))
            }
            _ => Ok(()),
        }
    }
}

/// Splits a code into a choice among `n` and the rest of the code.
pub fn choose(code: u32, n: u32) -> (u32, u32) {
    (code % n, code / n)
}

/// One step of a history.
#[derive(Clone, Debug)]
pub enum Action<O> {
    /// Replica `.0` performs an operation.
    Op(usize, O),
    /// Replica `.0`'s full state is merged into replica `.1`.
    Sync(usize, usize),
    /// Replica `.1` sends its digest to `.0`, which answers with a delta.
    DigestSync(usize, usize),
    /// Only the latest delta made by replica `.0` reaches replica `.1` (leaves gaps).
    Forward(usize, usize),
}

/// An action before decoding: `(kind, replica, replica, operation code)`.
pub type RawAction = (u8, u8, u8, u32);

/// Random raw histories.
pub fn raw_actions(max_len: usize) -> BoxedStrategy<Vec<RawAction>> {
    proptest::collection::vec(any::<RawAction>(), 1..max_len).boxed()
}

/// Decodes a raw history. `causal_only` leaves out lone deltas (`Forward`).
pub fn decode<S: Subject>(raw: &[RawAction], causal_only: bool) -> Vec<Action<S::Op>> {
    let r = |x: u8| usize::from(x) % REPLICAS;
    raw.iter()
        .map(|&(kind, i, j, code)| match (kind % 10, causal_only) {
            (0..=5, _) => Action::Op(r(i), S::op(code)),
            (6, _) | (8 | 9, true) => Action::Sync(r(i), r(j)),
            (7, _) => Action::DigestSync(r(i), r(j)),
            _ => Action::Forward(r(i), r(j)),
        })
        .collect()
}

/// A local operation as it happened.
#[derive(Clone, Debug)]
pub struct Step<S: Subject> {
    /// The replica.
    pub replica: Rep,
    /// State before.
    pub before: S,
    /// The operation.
    pub op: S::Op,
    /// `apply`'s result: the delta, or why it was refused.
    pub outcome: Result<S, UpdateError>,
    /// State after.
    pub after: S,
}

/// An executed history: every state any replica went through, and every local operation.
#[derive(Clone, Debug)]
pub struct Run<S: Subject> {
    /// Bottom, then each replica state after each step.
    pub states: Vec<S>,
    /// The local operations.
    pub steps: Vec<Step<S>>,
    /// Final replica states.
    pub replicas: Vec<S>,
}

/// Executes a history.
pub fn run<S: Subject>(actions: &[Action<S::Op>]) -> Run<S> {
    let mut replicas: Vec<S> = (0..REPLICAS).map(|_| S::bottom()).collect();
    let mut last_delta: Vec<S> = (0..REPLICAS).map(|_| S::bottom()).collect();
    let mut states = vec![S::bottom()];
    let mut steps = Vec::new();
    for action in actions {
        let touched = match action.clone() {
            Action::Op(i, op) => {
                let before = replicas[i].clone();
                let replica = Rep::try_from(i).expect("few replicas");
                let outcome = replicas[i].apply(op.clone(), &replica);
                if let Ok(delta) = &outcome {
                    last_delta[i] = delta.clone();
                }
                steps.push(Step { replica, before, op, outcome, after: replicas[i].clone() });
                i
            }
            Action::Sync(i, j) => {
                let from = replicas[i].clone();
                replicas[j].merge(&from);
                j
            }
            Action::DigestSync(i, j) => {
                let delta = replicas[i].delta(&replicas[j].digest());
                replicas[j].merge(&delta);
                j
            }
            Action::Forward(i, j) => {
                let delta = last_delta[i].clone();
                replicas[j].merge(&delta);
                j
            }
        };
        states.push(replicas[touched].clone());
    }
    Run { states, steps, replicas }
}

/// A raw history, three picks among its states, and a byte position to damage.
#[derive(Clone, Debug)]
pub struct RawWorld {
    /// The history.
    pub actions: Vec<RawAction>,
    /// Which states to take as `a`, `b`, `c`.
    pub picks: [Index; 3],
    /// Which encoded byte to flip.
    pub flip: usize,
}

/// Random worlds.
pub fn world() -> BoxedStrategy<RawWorld> {
    (raw_actions(28), any::<[Index; 3]>(), any::<usize>())
        .prop_map(|(actions, picks, flip)| RawWorld { actions, picks, flip })
        .boxed()
}

/// The three picked states.
pub fn pick<S: Subject>(run: &Run<S>, picks: &[Index; 3]) -> (S, S, S) {
    let get = |i: &Index| run.states[i.index(run.states.len())].clone();
    (get(&picks[0]), get(&picks[1]), get(&picks[2]))
}

/// Runs a property over `cases` random inputs (no failure files in the source tree); on
/// failure, panics with proptest's minimal failing input and the failure.
pub fn property<V: Clone + Debug>(
    cases: u32,
    strategy: BoxedStrategy<V>,
    test: &dyn Fn(V) -> Result<(), TestCaseError>,
) {
    let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

/// Adds context (the decoded history) to a failure.
pub fn context<T: Debug>(result: Result<(), TestCaseError>, what: &T) -> Result<(), TestCaseError> {
    result.map_err(|e| TestCaseError::fail(format!("{e}\nhistory: {what:#?}")))
}
