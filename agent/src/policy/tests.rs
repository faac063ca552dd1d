#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use serde_json::json;

use super::*;

const DENY_EXEC: &str = r#"
package agent_policy
default ExecProcessRequest := false
default CreateContainerRequest := true
default SetPolicyRequest := true
"#;

#[test]
fn no_policy_allows_everything_without_evaluating() {
    let mut policy = Policy::allow_all();
    assert!(!policy.is_enforcing());
    policy.check("ExecProcessRequest", &json!({})).unwrap();
}

#[test]
fn a_false_rule_denies_and_a_true_one_allows() {
    let mut policy = Policy::from_rego(DENY_EXEC).unwrap();
    assert!(policy.is_enforcing());
    policy.check("CreateContainerRequest", &json!({})).unwrap();
    let err = policy.check("ExecProcessRequest", &json!({})).unwrap_err();
    assert!(matches!(&err, PolicyError::Denied { request, .. } if request == "ExecProcessRequest"));
    assert_eq!(err.to_string(), "ExecProcessRequest is blocked by policy");
}

#[test]
fn a_rule_the_policy_does_not_define_denies() {
    let mut policy = Policy::from_rego(DENY_EXEC).unwrap();
    let err = policy.check("ListRoutesRequest", &json!({})).unwrap_err();
    assert!(matches!(err, PolicyError::Denied { .. }), "{err}");
}

#[test]
fn rules_read_the_input_and_the_policy_data_and_their_prints_explain_a_denial() {
    let rego = r#"
package agent_policy
policy_data := {"allowed_commands": [["/bin/echo", "hi"]]}
default CreateContainerRequest := false
CreateContainerRequest if {
    some allowed in policy_data.allowed_commands
    input.OCI.Process.Args == allowed
}
CreateContainerRequest if {
    print("command not allowed:", input.OCI.Process.Args)
    false
}
"#;
    let mut policy = Policy::from_rego(rego).unwrap();
    let request = |args: &[&str]| json!({"OCI": {"Process": {"Args": args}}});
    policy
        .check("CreateContainerRequest", &request(&["/bin/echo", "hi"]))
        .unwrap();
    let err = policy
        .check("CreateContainerRequest", &request(&["/bin/sh"]))
        .unwrap_err();
    assert!(
        err.to_string().contains("command not allowed:"),
        "the print is in the message: {err}"
    );
}

#[test]
fn malformed_policies_are_refused() {
    for rego in [
        "package agent_policy\nExecProcessRequest := {",
        "package other\ndefault ExecProcessRequest := true",
        "default ExecProcessRequest := true",
        "package agent_policy\nExecProcessRequest if { input.x == }",
    ] {
        let err = Policy::from_rego(rego).unwrap_err();
        assert!(
            matches!(err, PolicyError::Malformed { .. }),
            "{rego}: {err}"
        );
    }
}

#[test]
fn a_missing_default_file_allows_everything_and_a_present_one_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Policy::from_file(&dir.path().join("default-policy.rego")).unwrap();
    assert!(!missing.is_enforcing());
    let file = dir.path().join("policy.rego");
    std::fs::write(&file, DENY_EXEC).unwrap();
    let mut present = Policy::from_file(&file).unwrap();
    assert!(present.check("ExecProcessRequest", &json!({})).is_err());
    std::fs::write(&file, "package agent_policy\nx := {").unwrap();
    assert!(matches!(
        Policy::from_file(&file),
        Err(PolicyError::Malformed { .. })
    ));
}

#[test]
fn the_gate_replaces_the_policy_only_when_allowed_and_well_formed() {
    let gate = PolicyGate::default();
    let input = json!({"policy": ""});
    gate.replace(&input, DENY_EXEC).unwrap();
    assert!(gate.check("ExecProcessRequest", &json!({})).is_err());
    // Malformed: the policy in force stays.
    let err = gate.replace(&input, "package agent_policy\n{").unwrap_err();
    assert!(matches!(err, PolicyError::Malformed { .. }), "{err}");
    assert!(gate.check("ExecProcessRequest", &json!({})).is_err());
    // A policy that forbids SetPolicy cannot be replaced.
    let locked = "package agent_policy\ndefault SetPolicyRequest := false\ndefault ExecProcessRequest := true";
    gate.replace(&input, locked).unwrap();
    gate.check("ExecProcessRequest", &json!({})).unwrap();
    let err = gate
        .replace(
            &input,
            "package agent_policy\ndefault SetPolicyRequest := true",
        )
        .unwrap_err();
    assert!(matches!(err, PolicyError::Denied { .. }), "{err}");
}

#[test]
fn ops_of_an_allowed_answer_change_the_state_later_requests_see() {
    let rego = r#"
package agent_policy
default CreateSandboxRequest := false
CreateSandboxRequest := {"allowed": true, "ops": [{"op": "add", "path": "/pstate/hostname", "value": input.hostname}]} if {
    not data.pstate.hostname
}
default GuestDetailsRequest := false
GuestDetailsRequest if { data.pstate.hostname == "pod1" }
"#;
    let mut policy = Policy::from_rego(rego).unwrap();
    assert!(policy.check("GuestDetailsRequest", &json!({})).is_err());
    policy
        .check("CreateSandboxRequest", &json!({"hostname": "pod1"}))
        .unwrap();
    policy.check("GuestDetailsRequest", &json!({})).unwrap();
    // Once set, a second sandbox is refused.
    assert!(
        policy
            .check("CreateSandboxRequest", &json!({"hostname": "pod2"}))
            .is_err()
    );
}

#[test]
fn allow_requests_failing_policy_only_logs_denials() {
    let rego = "package agent_policy\ndefault AllowRequestsFailingPolicy := true\ndefault ExecProcessRequest := false";
    let mut policy = Policy::from_rego(rego).unwrap();
    policy.check("ExecProcessRequest", &json!({})).unwrap();
}

/// Found by `./run fuzz` (target `policy`, 2026-11-29): ~80 nested `[` in 193 bytes kept
/// regorus' parser busy past libFuzzer's 10 s timeout.
const FUZZ_TIMEOUT_NESTED_BRACKETS: &[u8] = b"package agent_polexec_idport fu[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[Procdcy_dat ={ \x22a:apackad\x22: [\x22shxec[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ProcessAReq\x22,l\x22 uest := truaf\x0aludeetetea rCCont";

#[test]
fn deeply_nested_brackets_are_refused_before_the_parser_sees_them() {
    let rego = String::from_utf8_lossy(FUZZ_TIMEOUT_NESTED_BRACKETS);
    let started = std::time::Instant::now();
    let Err(err) = Policy::from_rego(&rego) else {
        panic!("a policy nested 80 deep compiled");
    };
    assert!(err.to_string().contains("nest more than"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    for (open, close) in [("[", "]"), ("{", "}")] {
        let nested = |depth: usize| {
            format!(
                "package agent_policy\nx := {}1{}\n",
                open.repeat(depth),
                close.repeat(depth)
            )
        };
        let err = Policy::from_rego(&nested(engine::MAX_NESTING + 1))
            .err()
            .unwrap();
        assert!(err.to_string().contains("line 2"), "{err}");
        // At the limit the text goes on to the parser.
        engine::check_parser_limits(&nested(engine::MAX_NESTING)).unwrap();
    }
    // Brackets in strings, raw strings and comments do not count.
    Policy::from_rego(&quoted_only(&"[".repeat(40))).unwrap();
    Policy::from_rego(&quoted_only(&"{".repeat(40))).unwrap();
}

/// A policy with `text` only in a comment, a string and a raw string.
fn quoted_only(text: &str) -> String {
    format!("package agent_policy\n# {text}\ndefault A := \"{text}\"\ndefault B := `{text}`\n")
}

/// Found by `./run fuzz` (target `policy`, 2026-11-29, after the nesting limit): the
/// number `0e88888888` made regorus compute 10^88888888 as a big integer.
const FUZZ_TIMEOUT_HUGE_EXPONENT: &[u8] =
    b"package agent_poledport fudcwat2=0e88888888\x00\x00\x00\x00\x00\x00\x00\x01\x08\x08\x08\x088ap(efap]t";

#[test]
fn numbers_regorus_would_take_for_ever_over_are_refused() {
    let rego = String::from_utf8_lossy(FUZZ_TIMEOUT_HUGE_EXPONENT);
    let started = std::time::Instant::now();
    let err = Policy::from_rego(&rego).err().unwrap();
    assert!(err.to_string().contains("exponent beyond"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let policy = |value: &str| format!("package agent_policy\ndefault X := {value}\n");
    for refused in ["1e401", "2.5E+999", "1e-1000", &"7".repeat(401)] {
        let err = Policy::from_rego(&policy(refused)).err().unwrap();
        assert!(err.to_string().contains("line 2"), "{refused}: {err}");
    }
    for accepted in ["1e400", "65535", "0.5", "1.5e-3", &"9".repeat(400)] {
        engine::check_parser_limits(&policy(accepted)).unwrap();
    }
    // Digits inside names, strings and comments are not numbers.
    engine::check_parser_limits("package agent_policy\nx1e99999 := \"1e99999\" # 1e99999\n")
        .unwrap();
}

/// Found by `./run fuzz` (target `policy`, 2026-11-29, after the number limits): ~900
/// unary `-` in a row overflowed the stack in regorus' parser (it recurses once per minus,
/// with no limit of its own), which aborts the agent.
const FUZZ_STACK_OVERFLOW_UNARY_MINUS: &[u8] =
    include_bytes!("fuzz-regressions/stack-overflow-unary-minus.bin");

#[test]
fn runs_of_unary_minus_are_refused_before_they_overflow_the_stack() {
    let rego = String::from_utf8_lossy(FUZZ_STACK_OVERFLOW_UNARY_MINUS);
    // On a thread with the agent's worker stack (2 MiB): an overflow aborts the test run.
    let answer = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || Policy::from_rego(&rego).err().map(|e| e.to_string()))
        .unwrap()
        .join()
        .unwrap();
    let err = answer.expect("the fuzzer's policy compiled");
    assert!(err.contains("`-` in a row"), "{err}");
    let policy = |value: &str| format!("package agent_policy\nX := {value}\n");
    for refused in [
        "- - -1",
        "---1",
        &format!("{}1", "-".repeat(2000)),
        "1 - - -1",
        // Comments between the signs do not break a run.
        &format!("{}1", "- # a comment\n".repeat(900)),
    ] {
        let err = Policy::from_rego(&policy(refused)).err().unwrap();
        assert!(err.to_string().contains("line 2"), "{refused}: {err}");
    }
    for accepted in ["-1", "1 - -1", "[-1, -2]", "1e-5 - 2", "{\"a-b\": -1}"] {
        engine::check_parser_limits(&policy(accepted)).unwrap();
        Policy::from_rego(&policy(accepted)).unwrap();
    }
    // Dashes inside strings, raw strings and comments are not minus signs.
    Policy::from_rego(&quoted_only(&"-".repeat(40))).unwrap();
}
