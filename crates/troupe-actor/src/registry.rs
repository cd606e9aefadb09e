//! The per-node registry of named actors.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::error::RegistryError;
use crate::id::ActorId;
use crate::message::Message;
use crate::reference::{ActorRef, UntypedRef};

#[derive(Default)]
pub(crate) struct Registry {
    names: Mutex<HashMap<String, UntypedRef>>,
}

impl Registry {
    pub(crate) fn register(&self, name: String, actor: UntypedRef) -> Result<(), RegistryError> {
        let mut names = self.names.lock();
        if let Some(holder) = names.get(&name) {
            if holder.is_alive() && holder.id() != actor.id() {
                return Err(RegistryError::NameTaken { name, holder: holder.id() });
            }
        }
        {
            let mut life = actor.0.lifecycle().lock();
            if life.exit.is_some() {
                return Err(RegistryError::NotRunning(actor.id()));
            }
            if !life.names.contains(&name) {
                life.names.push(name.clone());
            }
        }
        names.insert(name, actor);
        Ok(())
    }

    pub(crate) fn lookup<M: Message>(&self, name: &str) -> Result<ActorRef<M>, RegistryError> {
        let found = self.names.lock().get(name).cloned();
        let actor = found.ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        actor.downcast::<M>().ok_or_else(|| RegistryError::WrongType {
            name: name.to_string(),
            expected: std::any::type_name::<M>(),
            actual: actor.message_type(),
        })
    }

    pub(crate) fn lookup_untyped(&self, name: &str) -> Option<UntypedRef> {
        self.names.lock().get(name).cloned()
    }

    pub(crate) fn unregister(&self, name: &str) -> bool {
        let removed = self.names.lock().remove(name);
        if let Some(actor) = &removed {
            actor.0.lifecycle().lock().names.retain(|n| n != name);
        }
        removed.is_some()
    }

    /// Removes `names` if they still point at `id` (called when the actor stops).
    pub(crate) fn remove_names(&self, names: &[String], id: ActorId) {
        if names.is_empty() {
            return;
        }
        let mut map = self.names.lock();
        for name in names {
            if map.get(name).is_some_and(|a| a.id() == id) {
                map.remove(name);
            }
        }
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.names.lock().keys().cloned().collect();
        names.sort();
        names
    }

    pub(crate) fn clear(&self) {
        self.names.lock().clear();
    }
}
