//! Messages the runtime sends to actors. They bypass mailbox capacity and are handled before user
//! messages.

use std::time::Duration;

use crate::exit::{Down, ExitReason};
use crate::id::ActorId;
use crate::reference::UntypedRef;

pub(crate) enum SystemMsg {
    /// Stop after the messages already accepted.
    Stop,
    /// Stop because the parent (or the node) is shutting down; never restarted.
    Shutdown,
    /// Stop now: drop the running handler and the queued messages.
    Kill,
    /// A watched actor stopped.
    Down(Down),
    /// A linked actor stopped.
    LinkExit { from: ActorId, reason: ExitReason },
    /// To a parent: this child ended an incarnation and waits for a directive.
    ChildFailed { child: UntypedRef, reason: ExitReason },
    /// To a parent: this child is gone for good.
    ChildTerminated { id: ActorId },
    /// To the guardian: supervise this top-level actor.
    Adopt(UntypedRef),
    /// Directive to a waiting child: start a new incarnation after `delay`.
    Restart { delay: Duration },
    /// Directive to a waiting child: do not restart.
    Terminate,
    /// To a running child: restart now because a sibling failed (one-for-all, rest-for-one).
    RestartNow,
}
