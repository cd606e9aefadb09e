//! How to create (and re-create) an actor.

use std::sync::Arc;

use crate::actor::Actor;

/// When a supervised actor is restarted after an incarnation ends (Erlang's restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always restarted, even after a normal stop.
    Permanent,
    /// Restarted only after a failure (panic, error, kill, linked failure).
    Transient,
    /// Never restarted.
    Temporary,
}

enum Source<A> {
    Instance(Option<A>),
    Factory(Arc<dyn Fn() -> A + Send + Sync>),
}

/// Everything needed to spawn an actor: where its state comes from, its restart type, its mailbox
/// capacity and an optional registered name.
///
/// An actor value converts into `Props` directly (`spawn(MyActor::new())`); such an actor cannot
/// be re-created, so it is [`Restart::Temporary`]. Use [`Props::factory`] for an actor its
/// supervisor may restart.
pub struct Props<A> {
    source: Source<A>,
    pub(crate) restart: Restart,
    pub(crate) capacity: Option<usize>,
    pub(crate) name: Option<String>,
}

impl<A: Actor> Props<A> {
    /// Props for a ready-made actor value (never restarted).
    pub fn new(actor: A) -> Self {
        Props { source: Source::Instance(Some(actor)), restart: Restart::Temporary, capacity: None, name: None }
    }

    /// Props that build the actor with `factory`, at spawn and at every restart. Restart type
    /// [`Restart::Transient`] unless changed.
    pub fn factory(factory: impl Fn() -> A + Send + Sync + 'static) -> Self {
        Props { source: Source::Factory(Arc::new(factory)), restart: Restart::Transient, capacity: None, name: None }
    }

    /// Sets the restart type. A restart type other than `Temporary` needs a factory.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Sets the mailbox capacity (default: the system's).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity.max(1));
        self
    }

    /// Registers the actor under `name` in its node's registry when spawned.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Creates the actor for the next incarnation; `None` when it cannot be re-created.
    pub(crate) fn create(&mut self) -> Option<A> {
        match &mut self.source {
            Source::Instance(slot) => slot.take(),
            Source::Factory(f) => Some(f()),
        }
    }

    /// Whether an incarnation that ended with `normal` (or not) should be restarted.
    pub(crate) fn wants_restart(&self, normal: bool) -> bool {
        let can_recreate = matches!(self.source, Source::Factory(_));
        can_recreate
            && match self.restart {
                Restart::Permanent => true,
                Restart::Transient => !normal,
                Restart::Temporary => false,
            }
    }

    /// Whether the actor can be restarted at all (for sibling restarts).
    pub(crate) fn restartable(&self) -> bool {
        matches!(self.source, Source::Factory(_)) && self.restart != Restart::Temporary
    }
}

impl<A: Actor> From<A> for Props<A> {
    fn from(actor: A) -> Self {
        Props::new(actor)
    }
}
