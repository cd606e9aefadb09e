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

/// Everything needed to spawn an actor: where its state comes from, its restart type and its
/// mailbox capacity.
///
/// An actor value converts into `Props` directly (`spawn(MyActor::new())`); such an actor cannot
/// be re-created, so it is [`Restart::Temporary`]. Use [`Props::factory`] for an actor its
/// supervisor may restart.
pub struct Props<A> {
    recipe: Recipe<A>,
    pub(crate) capacity: Option<usize>,
}

/// What an actor keeps of its [`Props`] after spawning: how to re-create it and when.
pub(crate) struct Recipe<A> {
    source: Source<A>,
    restart: Restart,
}

impl<A: Actor> Props<A> {
    /// Props for a ready-made actor value (never restarted).
    pub fn new(actor: A) -> Self {
        Props { recipe: Recipe { source: Source::Instance(Some(actor)), restart: Restart::Temporary }, capacity: None }
    }

    /// Props that build the actor with `factory`, at spawn and at every restart. Restart type
    /// [`Restart::Transient`] unless changed.
    pub fn factory(factory: impl Fn() -> A + Send + Sync + 'static) -> Self {
        Props {
            recipe: Recipe { source: Source::Factory(Arc::new(factory)), restart: Restart::Transient },
            capacity: None,
        }
    }

    /// Sets the restart type. A restart type other than `Temporary` needs a factory.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.recipe.restart = restart;
        self
    }

    /// Sets the mailbox capacity (default: the system's).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity.max(1));
        self
    }

    pub(crate) fn into_recipe(self) -> Recipe<A> {
        self.recipe
    }
}

impl<A: Actor> Recipe<A> {
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
