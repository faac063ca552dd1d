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

mod patch;

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Where Kata's agent reads the policy that applies before any `SetPolicy`, and where
/// `hull-image --policy` puts it.
pub const DEFAULT_POLICY_FILE: &str = "/etc/kata-opa/default-policy.rego";

/// The Rego package every policy declares.
pub const POLICY_PACKAGE: &str = "agent_policy";

/// The rule whose `true` turns denials into warnings (a debugging aid of Kata's).
const ALLOW_FAILURES_RULE: &str = "AllowRequestsFailingPolicy";

/// The entry point `SetPolicy` is checked with.
pub const SET_POLICY_REQUEST: &str = "SetPolicyRequest";

// regorus' default limits (1 KiB lines, 1 MiB files) reject policies that genpolicy
// writes; these are the limits Kata's agent sets.
const MAX_LINE_BYTES: u32 = 64 * 1024;
const MAX_POLICY_BYTES: usize = 16 * 1024 * 1024;
const MAX_POLICY_LINES: usize = 200_000;

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
#[derive(Clone)]
pub struct Policy {
    engine: Option<Engine>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the engine's compiled modules: pages of them.
        f.debug_struct("Policy")
            .field("enforcing", &self.is_enforcing())
            .field("state", &self.engine.as_ref().map(|e| &e.state))
            .finish()
    }
}

#[derive(Clone)]
struct Engine {
    rego: regorus::Engine,
    /// `data.pstate`, the state the policy's `ops` change.
    state: serde_json::Value,
    /// `AllowRequestsFailingPolicy`: denials are logged, not enforced.
    allow_failures: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self::allow_all()
    }
}

impl Policy {
    /// No policy: every request is allowed without evaluation.
    pub fn allow_all() -> Self {
        Self { engine: None }
    }

    /// Compiles `rego` (a module of package [`POLICY_PACKAGE`]).
    pub fn from_rego(rego: &str) -> Result<Self, PolicyError> {
        let malformed = |e: anyhow::Error| PolicyError::Malformed {
            reason: e.to_string(),
        };
        let mut rego_engine = new_engine();
        let package = rego_engine
            .add_policy(POLICY_PACKAGE.to_string(), rego.to_string())
            .map_err(malformed)?;
        if package != format!("data.{POLICY_PACKAGE}") {
            return Err(PolicyError::Malformed {
                reason: format!("the package is {package}, expected data.{POLICY_PACKAGE}"),
            });
        }
        let mut engine = Engine {
            rego: rego_engine,
            state: serde_json::json!({}),
            allow_failures: false,
        };
        engine.load_state()?;
        // Evaluating a rule compiles the whole module: errors that parsing does not see
        // (unknown functions, unsafe variables, conflicting rules) show here.
        let allow_failures = engine
            .query(ALLOW_FAILURES_RULE, &serde_json::json!({}))
            .map_err(|e| match e {
                PolicyError::Evaluation { reason, .. } => PolicyError::Malformed { reason },
                other => other,
            })?;
        engine.take_prints();
        engine.allow_failures = matches!(allow_failures, Some(regorus::Value::Bool(true)));
        if engine.allow_failures {
            tracing::warn!("policy: AllowRequestsFailingPolicy is set: denials are only logged");
        }
        Ok(Self {
            engine: Some(engine),
        })
    }

    /// The policy in `path`; none (everything allowed) when the file does not exist, as
    /// in an image built without one.
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
        let denied = |prints: String| PolicyError::Denied {
            request: request.to_string(),
            prints,
        };
        let answer = engine.query(request, input)?;
        let prints = engine.take_prints();
        let allowed = match answer {
            // Undefined: the policy says nothing about this request.
            None => false,
            Some(regorus::Value::Bool(allowed)) => allowed,
            Some(object @ regorus::Value::Object(_)) => engine.apply_metadata(request, &object)?,
            Some(other) => {
                return Err(PolicyError::Evaluation {
                    request: request.to_string(),
                    reason: format!("the rule answered {other}, expected a boolean or an object"),
                });
            }
        };
        if allowed {
            return Ok(());
        }
        if engine.allow_failures {
            tracing::warn!(request, %prints, "policy: denial ignored (AllowRequestsFailingPolicy)");
            return Ok(());
        }
        tracing::info!(request, %prints, "policy: request denied");
        Err(denied(prints))
    }
}

fn new_engine() -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    // As Kata's agent: a builtin's error makes its expression undefined, not the whole
    // evaluation fail; `print` output is kept for the denial's message.
    engine.set_strict_builtin_errors(false);
    engine.set_gather_prints(true);
    if let (Some(max_col), Some(max_file_bytes), Some(max_lines)) = (
        NonZeroU32::new(MAX_LINE_BYTES),
        NonZeroUsize::new(MAX_POLICY_BYTES),
        NonZeroUsize::new(MAX_POLICY_LINES),
    ) {
        engine.set_policy_length_config(regorus::PolicyLengthConfig {
            max_col,
            max_file_bytes,
            max_lines,
        });
    }
    engine
}

impl Engine {
    /// Evaluates `data.agent_policy.<rule>` with `input`; `None` when undefined.
    fn query(
        &mut self,
        rule: &str,
        input: &serde_json::Value,
    ) -> Result<Option<regorus::Value>, PolicyError> {
        let failed = |reason: String| PolicyError::Evaluation {
            request: rule.to_string(),
            reason,
        };
        let input = serde::Deserialize::deserialize(input)
            .map_err(|e: serde_json::Error| failed(e.to_string()))?;
        self.rego.set_input(input);
        let results = self
            .rego
            .eval_query(format!("data.{POLICY_PACKAGE}.{rule}"), false)
            .map_err(|e| failed(e.to_string()))?;
        let mut answers = results.result.into_iter();
        let answer = match (answers.next(), answers.next()) {
            (None, _) => return Ok(None),
            (Some(only), None) => only,
            (Some(_), Some(_)) => return Err(failed("the rule has more than one answer".into())),
        };
        let mut expressions = answer.expressions.into_iter();
        match (expressions.next(), expressions.next()) {
            (Some(only), None) => match only.value {
                regorus::Value::Undefined => Ok(None),
                value => Ok(Some(value)),
            },
            _ => Err(failed("the query did not give exactly one value".into())),
        }
    }

    fn take_prints(&mut self) -> String {
        self.rego
            .take_prints()
            .map(|prints| prints.join(" "))
            .unwrap_or_default()
    }

    /// An object answer: `{"allowed": bool, "ops": [JSON patch]}`; the patch applies to
    /// the state only when the request is allowed.
    fn apply_metadata(
        &mut self,
        request: &str,
        answer: &regorus::Value,
    ) -> Result<bool, PolicyError> {
        let failed = |reason: String| PolicyError::Evaluation {
            request: request.to_string(),
            reason,
        };
        let answer = serde_json::to_value(answer).map_err(|e| failed(e.to_string()))?;
        let allowed = answer
            .get("allowed")
            .and_then(serde_json::Value::as_bool)
            .ok_or_else(|| failed("the rule's object has no boolean \"allowed\"".into()))?;
        if !allowed {
            return Ok(false);
        }
        if let Some(ops) = answer.get("ops").filter(|ops| !ops.is_null()) {
            let mut data = serde_json::json!({ "pstate": self.state.clone() });
            patch::apply(&mut data, ops).map_err(|e| failed(e.to_string()))?;
            self.state = data
                .get_mut("pstate")
                .map(serde_json::Value::take)
                .unwrap_or_else(|| serde_json::json!({}));
            self.load_state()?;
        }
        Ok(true)
    }

    /// Makes the state visible to the policy as `data.pstate`.
    fn load_state(&mut self) -> Result<(), PolicyError> {
        let data = serde_json::json!({ "pstate": self.state });
        let data = serde::Deserialize::deserialize(&data).map_err(|e: serde_json::Error| {
            PolicyError::Evaluation {
                request: "pstate".into(),
                reason: e.to_string(),
            }
        })?;
        self.rego.clear_data();
        self.rego
            .add_data(data)
            .map_err(|e| PolicyError::Evaluation {
                request: "pstate".into(),
                reason: e.to_string(),
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
        *policy = Policy::from_rego(rego)?;
        tracing::info!("policy: a new policy is in force");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
