//! Bad-input tables: one row per request, with the ttRPC code and a fragment of the
//! message it must be refused with.
//!
//! ```no_run
//! # async fn demo(client: &hull_protocols::AgentClient) {
//! use hull_protocols::ttrpc::Code;
//! use hull_testkit::refusal;
//! let rows = vec![
//!     refusal("StartContainer of an unknown container", client.start_container("nope"), Code::NOT_FOUND, "nope"),
//!     refusal("StatsContainer of an unknown container", client.stats_container("nope"), Code::NOT_FOUND, "nope"),
//! ];
//! for row in rows {
//!     row.assert().await;
//! }
//! # }
//! ```
//!
//! A row's call is made when the row is checked, so the rows of a table run in order.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use hull_protocols::ClientError;
use hull_protocols::ttrpc::Code;

type Call<'a> = Pin<Box<dyn Future<Output = Result<Box<dyn Debug + 'a>, ClientError>> + 'a>>;

/// One row of a bad-input table; see [`refusal`].
pub struct Refusal<'a> {
    /// What the request is, for the failure message.
    pub what: String,
    call: Call<'a>,
    /// The code it must be refused with.
    pub code: Code,
    /// A fragment of the message it must be refused with.
    pub fragment: String,
}

/// A row: `call` (not yet made) must fail with `code` and a message containing
/// `fragment`.
pub fn refusal<'a, T: Debug + 'a>(
    what: &str,
    call: impl Future<Output = Result<T, ClientError>> + 'a,
    code: Code,
    fragment: impl Into<String>,
) -> Refusal<'a> {
    Refusal {
        what: what.to_string(),
        call: Box::pin(async move {
            call.await
                .map(|answer| Box::new(answer) as Box<dyn Debug + 'a>)
        }),
        code,
        fragment: fragment.into(),
    }
}

impl Refusal<'_> {
    /// Makes the call; answers why the answer is not the expected refusal, if it is not.
    pub async fn check(self) -> Result<(), String> {
        let answer = self.call.await;
        check_refused(&self.what, answer, self.code, &self.fragment)
    }

    /// Makes the call; fails the test unless it is refused as expected.
    pub async fn assert(self) {
        if let Err(why) = self.check().await {
            panic!("{why}");
        }
    }
}

/// Checks a table's rows in order; answers the first mismatch.
pub async fn check_all(rows: Vec<Refusal<'_>>) -> Result<(), String> {
    for row in rows {
        row.check().await?;
    }
    Ok(())
}

/// Answers why `answer` (to `what`) is not a refusal with `code` and a message
/// containing `fragment`, if it is not.
pub fn check_refused<T: Debug>(
    what: &str,
    answer: Result<T, ClientError>,
    code: Code,
    fragment: &str,
) -> Result<(), String> {
    match answer {
        Ok(answer) => Err(format!("{what}: accepted: {answer:?}")),
        Err(err) if err.rpc_code() != Some(code) => {
            Err(format!("{what}: wanted {code:?}, got {err}"))
        }
        Err(err) if !err.to_string().contains(fragment) => {
            Err(format!("{what}: {err} lacks {fragment:?}"))
        }
        Err(_) => Ok(()),
    }
}

/// Fails the test unless `answer` is a refusal with `code` and `fragment`.
pub fn assert_refused<T: Debug>(
    what: &str,
    answer: Result<T, ClientError>,
    code: Code,
    fragment: &str,
) {
    if let Err(why) = check_refused(what, answer, code, fragment) {
        panic!("{why}");
    }
}

impl Debug for Refusal<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refusal")
            .field("what", &self.what)
            .field("code", &self.code)
            .field("fragment", &self.fragment)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(code: Code, message: &str) -> Result<(), ClientError> {
        Err(ClientError::Rpc {
            method: "AgentService.StartContainer",
            code,
            message: message.into(),
        })
    }

    #[tokio::test]
    async fn a_row_checks_the_code_and_the_fragment() {
        let ok = refusal(
            "r",
            async { rpc(Code::NOT_FOUND, "no nope") },
            Code::NOT_FOUND,
            "nope",
        );
        assert_eq!(ok.check().await, Ok(()));
        let code = refusal(
            "r",
            async { rpc(Code::INTERNAL, "nope") },
            Code::NOT_FOUND,
            "nope",
        );
        assert!(code.check().await.unwrap_err().contains("wanted NOT_FOUND"));
        let text = refusal(
            "r",
            async { rpc(Code::NOT_FOUND, "gone") },
            Code::NOT_FOUND,
            "nope",
        );
        assert!(text.check().await.unwrap_err().contains("lacks \"nope\""));
        let accepted = refusal(
            "r",
            async { Ok::<_, ClientError>(7) },
            Code::NOT_FOUND,
            "nope",
        );
        assert_eq!(accepted.check().await, Err("r: accepted: 7".to_string()));
    }
}
