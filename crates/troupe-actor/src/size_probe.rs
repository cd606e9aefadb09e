//! Guards on the memory an idle actor costs (the `idle_actor_bytes` benchmark's goal is 1 KiB).

#[cfg(test)]
mod tests {
    use crate::prelude::*;

    struct Counter(u64);
    enum CounterMsg {
        Add(u64),
        Get(Reply<u64>),
    }
    impl Message for CounterMsg {}
    impl Actor for Counter {
        type Msg = CounterMsg;
        async fn handle(&mut self, msg: CounterMsg, _ctx: &mut Context<Self>) -> ActorResult {
            match msg {
                CounterMsg::Add(n) => self.0 += n,
                CounterMsg::Get(r) => {
                    r.send(self.0);
                }
            }
            Ok(())
        }
    }

    #[test]
    fn a_small_actor_stays_small() {
        let system = ActorSystem::builder().workers(1).build().expect("system");
        let actor: ActorRef<CounterMsg> = system.spawn(Counter(0));
        system.block_on(async {
            actor.tell(CounterMsg::Add(2)).await.expect("tell");
            assert_eq!(actor.ask(CounterMsg::Get).await, Ok(2));
        });
        // A detached cell and future of the same shape, never run.
        let id = crate::ActorId { node: system.node_id(), serial: u64::MAX };
        let cell = std::sync::Arc::new(crate::cell::ActorCell::<CounterMsg>::new(
            id,
            8,
            std::time::Duration::from_secs(1),
            std::sync::Weak::new(),
        ));
        let ctx = crate::context::Context::<Counter>::new(cell.clone(), system.clone(), None);
        let life = crate::runner::Life::new(cell, Props::new(Counter(0)).into_recipe(), ctx);
        let future = crate::runner::run_actor(life);
        let future_bytes = std::mem::size_of_val(&future);
        let cell_bytes = std::mem::size_of::<crate::cell::ActorCell<CounterMsg>>();
        drop(future);
        system.shutdown_blocking();
        assert!(future_bytes <= 368, "the actor future grew to {future_bytes} bytes");
        assert!(cell_bytes <= 200, "the actor cell grew to {cell_bytes} bytes");
    }
}
