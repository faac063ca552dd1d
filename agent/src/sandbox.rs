//! The sandbox: the one owner of the guest's state. For now that state is the network and
//! whether the runtime has asked for the sandbox to end; containers and storages join it
//! as they are built.

use tokio::sync::watch;

use crate::error::AgentError;
use crate::network::Network;

/// The guest-wide state every RPC works on.
pub struct Sandbox {
    shutdown: watch::Sender<bool>,
    network: Network,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// An empty sandbox, with the network in default settings.
    pub fn new() -> Self {
        Self {
            shutdown: watch::Sender::new(false),
            network: Network::default(),
        }
    }

    /// The same sandbox with `network` (settings from the agent's configuration).
    pub fn with_network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// The guest's network (the agent's own network namespace).
    pub fn network(&self) -> &Network {
        &self.network
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
