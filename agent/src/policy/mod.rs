//! The agent policy: a Rego document that decides, request by request, what the host may
//! ask of the agent (Kata Containers' "agent policy", evaluated by `regorus` as Kata's
//! agent does).
//!
//! A policy is a Rego module of package `agent_policy`. Before a request is acted on, the
//! rule named after the request's protobuf message (`data.agent_policy.ExecProcessRequest`,
//! `data.agent_policy.ReadStreamRequest` for both ReadStdout and ReadStderr, ...) is
//! evaluated with the request as `input`. The rule allows the request when it is `true`,
//! or an object `{"allowed": true, "ops": [...]}` whose JSON-patch `ops` then change the
//! policy state `data.pstate` that later requests see (as genpolicy's rules do). `false`
//! denies it, and so does a rule the policy does not define. A policy whose
//! `AllowRequestsFailingPolicy` is `true` only logs its denials.
//!
//! [`Policy::allow_all`] is what applies while no policy was loaded: no evaluation at all.
//! [`PolicyGate`] is the one policy of a running agent, shared by every connection:
//! checked before each request and replaced, under the policy in force, by `SetPolicy`.

#[cfg(feature = "policy")]
#[path = "engine.rs"]
mod engine;
#[cfg(not(feature = "policy"))]
#[path = "no_engine.rs"]
mod engine;
#[cfg(feature = "policy")]
mod patch;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use engine::Engine;

/// Where Kata's agent reads the policy that applies before any `SetPolicy`, and where
/// `hull-image --policy` puts it.
pub const DEFAULT_POLICY_FILE: &str = "/etc/kata-opa/default-policy.rego";

/// The Rego package every policy declares.
pub const POLICY_PACKAGE: &str = "agent_policy";

/// The entry point `SetPolicy` is checked with.
pub const SET_POLICY_REQUEST: &str = "SetPolicyRequest";

/// Whether this hull-agent has the policy engine (cargo feature `policy`). Without it no
/// policy can be loaded: `SetPolicy` answers `UNIMPLEMENTED` and an image policy stops the
/// agent before it serves ([`PolicyError::NotBuiltIn`]).
pub const ENGINE_BUILT_IN: bool = cfg!(feature = "policy");

/// Where an agent with the engine comes from, for the errors of one without it.
pub const POLICY_AGENT_HINT: &str = "an image built with the policy-enabled agent has it \
    (`just guest` builds it as target/x86_64-unknown-linux-gnu/guest/hull-agent-policy, \
    `just initrd` the initrd build/initrd-policy.img; `hull-image --agent` takes it)";

/// Why a policy was not loaded, or a request was not allowed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy text is not valid Rego, or cannot be evaluated.
    #[error("the policy is malformed: {reason}")]
    Malformed {
        /// regorus' diagnosis.
        reason: String,
    },
    /// The policy file could not be read.
    #[error("cannot read the policy file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The read's error.
        #[source]
        source: std::io::Error,
    },
    /// The policy denies the request.
    #[error("{request} is blocked by policy{}", if prints.is_empty() { String::new() } else { format!(": {prints}") })]
    Denied {
        /// The rule consulted (the request's message name).
        request: String,
        /// What the policy printed while deciding (`print(...)`), space-separated.
        prints: String,
    },
    /// This hull-agent was built without the `policy` feature: it cannot enforce one.
    #[error(
        "this hull-agent was built without the policy engine (cargo feature `policy`); \
         {POLICY_AGENT_HINT}"
    )]
    NotBuiltIn,
    /// `SetPolicy` to a hull-agent built without the `policy` feature.
    #[error(
        "/grpc.AgentService/SetPolicy is not implemented by this hull-agent: it was built \
         without the policy engine (cargo feature `policy`); {POLICY_AGENT_HINT}"
    )]
    SetPolicyNotBuiltIn,
    /// The request could not be turned into the policy's input.
    #[error("{request} cannot be checked: {reason}")]
    Input {
        /// The rule that would have been consulted.
        request: String,
        /// What is wrong with the request.
        reason: String,
    },
    /// The policy's answer could not be evaluated or understood.
    #[error("{request}: the policy could not be evaluated: {reason}")]
    Evaluation {
        /// The rule consulted.
        request: String,
        /// What went wrong.
        reason: String,
    },
}

/// A loaded policy, or none (everything allowed).
#[derive(Clone, Default)]
pub struct Policy {
    engine: Option<Engine>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the engine's compiled modules: pages of them.
        f.debug_struct("Policy")
            .field("enforcing", &self.is_enforcing())
            .finish()
    }
}

impl Policy {
    /// No policy: every request is allowed without evaluation.
    pub fn allow_all() -> Self {
        Self { engine: None }
    }

    /// Compiles `rego` (a module of package [`POLICY_PACKAGE`]).
    pub fn from_rego(rego: &str) -> Result<Self, PolicyError> {
        Ok(Self {
            engine: Some(Engine::compile(rego)?),
        })
    }

    /// The policy in `path`; none (everything allowed) when the file does not exist, as
    /// in an image built without one. An agent without the engine refuses a file that
    /// exists ([`PolicyError::NotBuiltIn`]): it must not serve without the image's policy.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_rego(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::allow_all()),
            Err(source) => Err(PolicyError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Whether requests are evaluated at all (a policy was loaded).
    pub fn is_enforcing(&self) -> bool {
        self.engine.is_some()
    }

    /// Decides `request` (the message name, e.g. `ExecProcessRequest`) with `input` (the
    /// request in Kata's JSON form). An allowed request's state changes are kept.
    pub fn check(&mut self, request: &str, input: &serde_json::Value) -> Result<(), PolicyError> {
        let Some(engine) = &mut self.engine else {
            return Ok(());
        };
        let (allowed, prints) = engine.decide(request, input)?;
        if allowed {
            return Ok(());
        }
        if engine.allows_failures() {
            tracing::warn!(request, %prints, "policy: denial ignored (AllowRequestsFailingPolicy)");
            return Ok(());
        }
        tracing::info!(request, %prints, "policy: request denied");
        Err(PolicyError::Denied {
            request: request.to_string(),
            prints,
        })
    }
}

/// The policy of a running agent, shared by every connection.
#[derive(Debug, Default)]
pub struct PolicyGate {
    policy: Mutex<Policy>,
}

impl PolicyGate {
    /// Enforces `policy` from now on.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy: Mutex::new(policy),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Policy> {
        // A panic while evaluating leaves the engine as it was: keep using it.
        self.policy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a policy is loaded (requests are evaluated).
    pub fn is_enforcing(&self) -> bool {
        self.lock().is_enforcing()
    }

    /// Decides `request` with `input`; see [`Policy::check`].
    pub fn check(&self, request: &str, input: &serde_json::Value) -> Result<(), PolicyError> {
        self.lock().check(request, input)
    }

    /// `SetPolicy`: asks the policy in force (rule [`SET_POLICY_REQUEST`], `input` the
    /// request), then replaces it with `rego`. Both happen under one lock, so no other
    /// request slips between the check and the change. A denied request or a malformed
    /// policy leaves the policy in force unchanged.
    pub fn replace(&self, input: &serde_json::Value, rego: &str) -> Result<(), PolicyError> {
        let mut policy = self.lock();
        policy.check(SET_POLICY_REQUEST, input)?;
        *policy = Policy::from_rego(rego).map_err(|e| match e {
            PolicyError::NotBuiltIn => PolicyError::SetPolicyNotBuiltIn,
            other => other,
        })?;
        tracing::info!("policy: a new policy is in force");
        Ok(())
    }
}

#[cfg(all(test, feature = "policy"))]
mod tests;
