//! A route's auth phase: its providers tried in order, the rule that combines their
//! answers, and `require` checked on the identity that wins.
//!
//! The first provider that accepts the request wins. If none does: any `Unavailable`
//! → 503 `auth_unavailable`; else any `Invalid` → 401 with the first one's description;
//! else (no credentials anywhere) → anonymous on an `auth_optional` route, else 401. A
//! bad credential is never anonymous, even on an optional route (Envoy's
//! `allow_missing`, not `allow_missing_or_failed`). An identity `require` refuses, or
//! on which it fails to evaluate (a missing claim), is 403.

use crate::auth::{AuthError, Identity, Provider};
use crate::condition::{ClaimsCondition, ConditionError};
use crate::error::GatewayError;
use crate::metrics::Label;
use http::{HeaderMap, Uri};
use std::borrow::Cow;
use std::sync::Arc;

/// A route's `auth`, resolved to running providers.
#[derive(Debug)]
pub struct RouteAuth {
    /// The route's providers, in the order they are tried.
    pub providers: Vec<Arc<Provider>>,
    /// `auth_optional`: a request with no credentials passes, anonymous.
    pub optional: bool,
    /// `require`: what the accepted identity must satisfy, or 403.
    pub require: Option<ClaimsCondition>,
}

/// Why the auth phase refused a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// No provider found credentials (401).
    Missing,
    /// The first description of a credential refused (401).
    Invalid(Cow<'static, str>),
    /// `require` refused the identity (403).
    Forbidden,
    /// A provider had no keys to check a credential with (503).
    Unavailable,
}

impl Refusal {
    /// The reason it is counted under in `fanout_auth_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Invalid(_) => "invalid",
            Refusal::Forbidden => "forbidden",
            Refusal::Unavailable => "unavailable",
        }
    }
}

impl From<Refusal> for GatewayError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Missing => GatewayError::Unauthorized {
                description: "no credentials".into(),
            },
            Refusal::Invalid(description) => GatewayError::Unauthorized { description },
            Refusal::Forbidden => GatewayError::Forbidden,
            Refusal::Unavailable => GatewayError::AuthUnavailable,
        }
    }
}

impl RouteAuth {
    /// The request's identity (`None`: anonymous, on an optional route), or why it is
    /// refused.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        route: &Label,
    ) -> Result<Option<Arc<Identity>>, Refusal> {
        let mut tally = Tally::default();
        for provider in &self.providers {
            match provider.authenticate(headers, uri).await {
                Ok(identity) => return self.require(identity, route).map(Some),
                Err(e) => tally.add(e),
            }
        }
        tally.finish(self.optional).map(|()| None)
    }

    /// `require` on the accepted identity.
    fn require(&self, identity: Arc<Identity>, route: &Label) -> Result<Arc<Identity>, Refusal> {
        let Some(require) = &self.require else {
            return Ok(identity);
        };
        let outcome = require.evaluate(&identity);
        if outcome == Ok(true) {
            return Ok(identity);
        }
        // The claims stay out of the log: an evaluation error may quote them.
        let why = match outcome {
            Ok(_) => "false",
            Err(ConditionError::NotBool(_)) => "not a boolean",
            Err(_) => "evaluation failed",
        };
        tracing::info!(
            route = route.as_str(),
            provider = &*identity.provider,
            subject = &*identity.subject,
            why,
            "require refused the identity"
        );
        Err(Refusal::Forbidden)
    }
}

/// What the providers that did not accept said, combined by the rule above.
#[derive(Debug, Default)]
struct Tally {
    unavailable: bool,
    /// The first `Invalid`'s description.
    invalid: Option<Cow<'static, str>>,
}

impl Tally {
    fn add(&mut self, error: AuthError) {
        match error {
            AuthError::Missing => {}
            AuthError::Invalid(why) => {
                self.invalid.get_or_insert(why);
            }
            AuthError::Unavailable => self.unavailable = true,
        }
    }

    /// `Ok(())`: anonymous.
    fn finish(self, optional: bool) -> Result<(), Refusal> {
        if self.unavailable {
            return Err(Refusal::Unavailable);
        }
        match self.invalid {
            Some(description) => Err(Refusal::Invalid(description)),
            None if optional => Ok(()),
            None => Err(Refusal::Missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(errors: Vec<AuthError>) -> Tally {
        let mut t = Tally::default();
        errors.into_iter().for_each(|e| t.add(e));
        t
    }

    fn outcome(errors: Vec<AuthError>, optional: bool) -> Result<(), (&'static str, String)> {
        tally(errors)
            .finish(optional)
            .map_err(|r| (r.reason(), GatewayError::from(r).to_string()))
    }

    fn invalid(why: &'static str) -> AuthError {
        AuthError::Invalid(why.into())
    }

    #[test]
    fn unavailable_wins_over_invalid_and_missing() {
        let e = outcome(
            vec![
                invalid("expired"),
                AuthError::Unavailable,
                AuthError::Missing,
            ],
            true,
        );
        assert_eq!(e.unwrap_err().0, "unavailable");
    }

    #[test]
    fn the_first_invalid_description_is_answered() {
        let e = outcome(
            vec![
                AuthError::Missing,
                invalid("expired"),
                invalid("bad signature"),
            ],
            false,
        );
        assert_eq!(e.unwrap_err(), ("invalid", "expired".to_string()));
    }

    #[test]
    fn a_bad_credential_is_never_anonymous() {
        let e = outcome(vec![invalid("the API key is not valid")], true);
        assert_eq!(e.unwrap_err().0, "invalid");
    }

    #[test]
    fn all_missing_is_anonymous_only_when_optional() {
        let missing = || vec![AuthError::Missing, AuthError::Missing];
        assert_eq!(outcome(missing(), true), Ok(()));
        assert_eq!(
            outcome(missing(), false).unwrap_err(),
            ("missing", "no credentials".to_string())
        );
        assert_eq!(outcome(vec![], true), Ok(()));
    }
}
