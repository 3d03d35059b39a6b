//! Grant problems: what is wrong with a grant that only a person (or Zoom) can fix, recorded
//! in the token Secret so that every replica and every restart sees the same truth.

use std::fmt;

/// Why the grant cannot be used or renewed. The names are the condition reasons of api.md
/// section 2 (`RefreshTokenSpent` is shown as `RefreshTokenRejected` with its own message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrantReason {
    /// Zoom refused the refresh token (revoked, expired, superseded).
    RefreshTokenRejected,
    /// The stored refresh token had already been sent by a refresher that never stored
    /// Zoom's answer (found by its stale fence); it is never sent again.
    RefreshTokenSpent,
    /// Zoom sent `app_deauthorized`: the tokens were deleted.
    Deauthorized,
    /// Zoom refused the Server-to-Server app's account credentials.
    AccountCredentialsRejected,
    /// Zoom refused the client ID and secret (or the app is disabled, see [`APP_DISABLED`]).
    InvalidClientCredentials,
    /// The last browser authorization failed (denied, bad code); the grant may be intact.
    AuthorizationFailed,
}

/// How an `InvalidClientCredentials` problem's message starts when the credentials are right
/// but Zoom has disabled the app (4717): the status then says so instead of "copy them again".
pub const APP_DISABLED: &str = "Zoom says the app is disabled";

impl GrantReason {
    const ALL: [GrantReason; 6] = [
        GrantReason::RefreshTokenRejected,
        GrantReason::RefreshTokenSpent,
        GrantReason::Deauthorized,
        GrantReason::AccountCredentialsRejected,
        GrantReason::InvalidClientCredentials,
        GrantReason::AuthorizationFailed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            GrantReason::RefreshTokenRejected => "RefreshTokenRejected",
            GrantReason::RefreshTokenSpent => "RefreshTokenSpent",
            GrantReason::Deauthorized => "Deauthorized",
            GrantReason::AccountCredentialsRejected => "AccountCredentialsRejected",
            GrantReason::InvalidClientCredentials => "InvalidClientCredentials",
            GrantReason::AuthorizationFailed => "AuthorizationFailed",
        }
    }

    /// The reason as stored in the annotation. Anything else (a tenant's edit) is no reason.
    pub fn parse(value: &str) -> Option<GrantReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }

    /// The refresh token is dead: only authorizing again helps.
    pub const fn refresh_token_dead(self) -> bool {
        matches!(
            self,
            GrantReason::RefreshTokenRejected | GrantReason::RefreshTokenSpent
        )
    }
}

impl fmt::Display for GrantReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A grant problem and the words that explain it (never a token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantProblem {
    pub reason: GrantReason,
    pub message: String,
}

impl GrantProblem {
    pub fn new(reason: GrantReason, message: impl Into<String>) -> GrantProblem {
        GrantProblem {
            reason,
            message: message.into(),
        }
    }

    /// Whether the app is disabled at Zoom (rather than its credentials wrong).
    pub fn app_disabled(&self) -> bool {
        self.reason == GrantReason::InvalidClientCredentials
            && self.message.starts_with(APP_DISABLED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_and_foreign_values_are_no_reason() {
        for reason in GrantReason::ALL {
            assert_eq!(GrantReason::parse(reason.as_str()), Some(reason));
        }
        for forged in ["", "Ready", "refreshtokenrejected", "RefreshTokenRejected "] {
            assert_eq!(GrantReason::parse(forged), None, "{forged:?}");
        }
        assert!(GrantReason::RefreshTokenSpent.refresh_token_dead());
        assert!(!GrantReason::Deauthorized.refresh_token_dead());
    }

    #[test]
    fn a_disabled_app_is_told_apart_from_wrong_credentials() {
        let disabled = GrantProblem::new(
            GrantReason::InvalidClientCredentials,
            format!("{APP_DISABLED} (HTTP 401 4717)"),
        );
        assert!(disabled.app_disabled());
        let wrong = GrantProblem::new(GrantReason::InvalidClientCredentials, "HTTP 401");
        assert!(!wrong.app_disabled());
    }
}
