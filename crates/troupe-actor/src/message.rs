//! The [`Message`] trait: what can be sent to an actor, and which actor references it carries.

use crate::reference::{ActorRef, UntypedRef};

/// A value that can be sent to an actor.
///
/// Implement it with an empty body for messages that carry no actor references:
///
/// ```
/// # use troupe_actor::Message;
/// enum Command { Start, Stop }
/// impl Message for Command {}
/// ```
///
/// Messages that carry references list them in [`visit_refs`](Message::visit_refs). The remote
/// transport uses this to serialize references, migration to re-point them, and the actor garbage
/// collector to track who knows whom.
pub trait Message: Send + 'static {
    /// Calls `visit` once for every actor reference inside the message.
    fn visit_refs(&self, visit: &mut dyn FnMut(UntypedRef)) {
        let _ = visit;
    }
}

impl<M: Message> Message for ActorRef<M> {
    fn visit_refs(&self, visit: &mut dyn FnMut(UntypedRef)) {
        visit(self.untyped());
    }
}

impl Message for UntypedRef {
    fn visit_refs(&self, visit: &mut dyn FnMut(UntypedRef)) {
        visit(self.clone());
    }
}

impl<T: Message> Message for Option<T> {
    fn visit_refs(&self, visit: &mut dyn FnMut(UntypedRef)) {
        if let Some(inner) = self {
            inner.visit_refs(visit);
        }
    }
}

impl<T: Message> Message for Vec<T> {
    fn visit_refs(&self, visit: &mut dyn FnMut(UntypedRef)) {
        for item in self {
            item.visit_refs(visit);
        }
    }
}

impl<T: Message> Message for Box<T> {
    fn visit_refs(&self, visit: &mut dyn FnMut(UntypedRef)) {
        (**self).visit_refs(visit);
    }
}

macro_rules! tuple_message {
    ($($name:ident),+) => {
        impl<$($name: Message),+> Message for ($($name,)+) {
            #[allow(non_snake_case)]
            fn visit_refs(&self, visit: &mut dyn FnMut(UntypedRef)) {
                let ($($name,)+) = self;
                $($name.visit_refs(visit);)+
            }
        }
    };
}
tuple_message!(A, B);
tuple_message!(A, B, C);
tuple_message!(A, B, C, D);

macro_rules! plain_message {
    ($($t:ty),*) => { $(impl Message for $t {})* };
}
plain_message!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    &'static str,
    std::time::Duration,
    std::time::Instant
);

impl Message for crate::exit::Down {}

/// A bare reply port is a message too: `ActorRef<Reply<T>>` is an actor that answers a request
/// carrying nothing else.
impl<T: Send + 'static> Message for crate::reply::Reply<T> {}
