//! The Rego engine behind [`Policy`](super::Policy): regorus, set up as Kata's agent sets
//! it up.

use std::num::{NonZeroU32, NonZeroUsize};

use super::{POLICY_PACKAGE, PolicyError, patch};

/// The rule whose `true` turns denials into warnings (a debugging aid of Kata's).
const ALLOW_FAILURES_RULE: &str = "AllowRequestsFailingPolicy";

// regorus' default limits (1 KiB lines, 1 MiB files) reject policies that genpolicy
// writes; these are the limits Kata's agent sets.
const MAX_LINE_BYTES: u32 = 64 * 1024;
const MAX_POLICY_BYTES: usize = 16 * 1024 * 1024;
const MAX_POLICY_LINES: usize = 200_000;

/// How deep `[` and `{` may nest in a policy. regorus parses each `[`/`{` first as a
/// comprehension and, when that fails, again as an array, set or object, so its time
/// doubles with every level: measured on this project's machine (release build), depth 12
/// took 0.1–0.23 s, 14 0.3–0.7 s, 16 1.6–3.3 s, 18 7–14 s, and the fuzzer's 200-byte policy
/// of ~80 nested `[` never finished. With a unary minus after each bracket (`[- -[- -`,
/// [`MAX_MINUS_RUN`] per level) depth 14 took 1.4–1.6 s and 12 0.3 s, so the limit is 12.
/// Kata's genpolicy rules nest 3 deep and the settings it turns into `policy_data` 5.
pub const MAX_NESTING: usize = 12;

/// How many `-` may follow one another (with only spaces or comments between): regorus parses each
/// unary minus by recursion with no limit of its own, and the fuzzer's policy of ~900 `-`
/// overflowed the stack (1024 overflow a 2 MiB thread stack in a release build). Two
/// allow `x - -1`.
pub const MAX_MINUS_RUN: usize = 2;

/// A compiled policy and its state.
#[derive(Clone)]
pub struct Engine {
    rego: regorus::Engine,
    /// `data.pstate`, the state the policy's `ops` change.
    state: serde_json::Value,
    /// `AllowRequestsFailingPolicy`: denials are logged, not enforced.
    allow_failures: bool,
}

impl Engine {
    /// Compiles `rego` (a module of package [`POLICY_PACKAGE`]).
    pub fn compile(rego: &str) -> Result<Self, PolicyError> {
        let malformed = |e: anyhow::Error| PolicyError::Malformed {
            reason: e.to_string(),
        };
        check_parser_limits(rego)?;
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
        // show here.
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
        Ok(engine)
    }

    /// Whether denials are only logged.
    pub fn allows_failures(&self) -> bool {
        self.allow_failures
    }

    /// Evaluates the rule `request` with `input`: whether it allows, and what the policy
    /// printed. An allowed object answer's `ops` change the state.
    pub fn decide(
        &mut self,
        request: &str,
        input: &serde_json::Value,
    ) -> Result<(bool, String), PolicyError> {
        let answer = self.query(request, input)?;
        let prints = self.take_prints();
        let allowed = match answer {
            // Undefined: the policy says nothing about this request.
            None => false,
            Some(regorus::Value::Bool(allowed)) => allowed,
            Some(object @ regorus::Value::Object(_)) => self.apply_metadata(request, &object)?,
            Some(other) => {
                return Err(PolicyError::Evaluation {
                    request: request.to_string(),
                    reason: format!("the rule answered {other}, expected a boolean or an object"),
                });
            }
        };
        Ok((allowed, prints))
    }
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

/// Refuses, before regorus parses it, a policy on which its parser would spend time out
/// of all proportion to its size or overflow its stack (outside strings, raw strings and
/// comments): `[` and `{` nested deeper than [`MAX_NESTING`], more than [`MAX_MINUS_RUN`]
/// `-` in a row, or a number literal with more than
/// [`MAX_NUMBER_DIGITS`] digits or an exponent beyond ±[`MAX_EXPONENT`] (regorus computes
/// `10^exponent` as a big integer: the fuzzer's `0e88888888` never finished).
pub(super) fn check_parser_limits(rego: &str) -> Result<(), PolicyError> {
    let bytes = rego.as_bytes();
    let refuse = |at: usize, what: String| {
        let line = rego.as_bytes()[..at]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Err(PolicyError::Malformed {
            reason: format!("{what} (line {line})"),
        })
    };
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let at = i;
        match bytes[i] {
            // A comment runs to the end of its line.
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return refuse(
                        at,
                        format!(
                            "brackets nest more than {MAX_NESTING} deep: regorus' parse time \
                             doubles with each level"
                        ),
                    );
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' => {
                // Spaces and comments between the signs do not end a run.
                let mut run = 0;
                while i < bytes.len() {
                    match bytes[i] {
                        b'-' => run += 1,
                        b'#' => {
                            while i < bytes.len() && bytes[i] != b'\n' {
                                i += 1;
                            }
                            continue;
                        }
                        byte if byte.is_ascii_whitespace() => {}
                        _ => break,
                    }
                    i += 1;
                }
                if run > MAX_MINUS_RUN {
                    return refuse(
                        at,
                        format!(
                            "more than {MAX_MINUS_RUN} `-` in a row: regorus parses each \
                             unary minus by recursion"
                        ),
                    );
                }
                continue;
            }
            b'0'..=b'9' if at == 0 || !is_word_byte(bytes[at - 1]) => {
                let number = number_at(bytes, at);
                if number.digits > MAX_NUMBER_DIGITS {
                    return refuse(
                        at,
                        format!("a number of more than {MAX_NUMBER_DIGITS} digits"),
                    );
                }
                if number.exponent > MAX_EXPONENT {
                    return refuse(
                        at,
                        format!("a number with an exponent beyond ±{MAX_EXPONENT}"),
                    );
                }
                i = number.end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Most digits a number literal may have (an `f64` needs at most 17 significant ones,
/// its largest value 309).
pub const MAX_NUMBER_DIGITS: usize = 400;
/// Largest exponent (either sign) a number literal may have (`f64` reaches 10^308).
pub const MAX_EXPONENT: u64 = 400;

/// Whether `byte` continues an identifier (so a digit after it is not a number's start).
fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// A number literal's shape: its mantissa's digit count, its exponent's magnitude
/// (saturating) and where it ends.
struct NumberShape {
    digits: usize,
    exponent: u64,
    end: usize,
}

/// Reads `digits [. digits] [e|E [+|-] digits]` from `start`.
fn number_at(bytes: &[u8], start: usize) -> NumberShape {
    let mut i = start;
    let mut digits = 0;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        digits += usize::from(bytes[i] != b'.');
        i += 1;
    }
    let mut exponent = 0u64;
    if i < bytes.len() && matches!(bytes[i], b'e' | b'E') {
        let mut j = i + 1;
        if j < bytes.len() && matches!(bytes[j], b'+' | b'-') {
            j += 1;
        }
        if j < bytes.len() && bytes[j].is_ascii_digit() {
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                exponent = exponent
                    .saturating_mul(10)
                    .saturating_add(u64::from(bytes[j] - b'0'));
                j += 1;
            }
            i = j;
        }
    }
    NumberShape {
        digits,
        exponent,
        end: i,
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
