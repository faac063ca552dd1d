//! The sandbox: the one owner of the guest's state: whether the runtime has asked for the
//! sandbox to end, and its containers ([`crate::container::Containers`]); storages and
//! network join it as they are built.

use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::container::{ContainerSettings, Containers};
use crate::error::AgentError;

/// The guest-wide state every RPC works on.
pub struct Sandbox {
    shutdown: watch::Sender<bool>,
    containers: Containers,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// An empty sandbox with the default settings.
    pub fn new() -> Self {
        Self::from_config(&AgentConfig::default())
    }

    /// An empty sandbox laid out as `config` says.
    pub fn from_config(config: &AgentConfig) -> Self {
        Self {
            shutdown: watch::Sender::new(false),
            containers: Containers::new(ContainerSettings {
                container_base: config.container_base.clone(),
                cgroup_root: config.cgroup_root.clone(),
            }),
        }
    }

    /// The sandbox's containers.
    pub fn containers(&self) -> &Containers {
        &self.containers
    }

    /// Ends the sandbox: the agent stops serving and exits with status 0, which hull-init
    /// takes as the request to power the VM off.
    pub fn destroy(&self) -> Result<(), AgentError> {
        if *self.shutdown.borrow() {
            return Err(AgentError::FailedPrecondition(
                "the sandbox is already being destroyed".into(),
            ));
        }
        self.shutdown.send_replace(true);
        Ok(())
    }

    /// Resolves once [`Sandbox::destroy`] has been called.
    pub async fn destroyed(&self) {
        let mut rx = self.shutdown.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while we borrow it.
        let _ = rx.wait_for(|destroyed| *destroyed).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn destroy_wakes_the_waiter_once() {
        let sandbox = std::sync::Arc::new(Sandbox::new());
        let waiter = tokio::spawn({
            let sandbox = sandbox.clone();
            async move { sandbox.destroyed().await }
        });
        sandbox.destroy().unwrap();
        waiter.await.unwrap();
        assert!(matches!(
            sandbox.destroy(),
            Err(AgentError::FailedPrecondition(_))
        ));
    }
}
