//! Renewing a session's tokens and claims with its refresh token
//! (`session.refresh = true`), so a user removed from a group at the IdP
//! loses the matching access at the next refresh.
//!
//! A request that finds its session past [`Session::refresh_at`] (a little
//! before the ID token expires) starts a refresh in the background and is
//! answered with the current, still valid session. Single-flight: within an
//! instance the gateway starts at most one refresh per session every
//! [`REFRESH_LOCK`]; across instances the store's lock
//! ([`SessionStore::lock_refresh`], a Redis key with a short TTL) lets
//! exactly one instance ask the IdP. The winner saves the renewed session,
//! which drops every instance's cached copy. An IdP that rejects the refresh
//! token (`invalid_grant`) ends the session everywhere; an unreachable IdP
//! leaves it as it is until the next attempt.

use std::sync::Arc;

use crate::oidc::{LoginError, Oidc};
use crate::session::{refresh_at, Session, SessionStore, REFRESH_LOCK};

/// Refreshes `seen` unless another instance does, or already did.
pub async fn run(store: Arc<dyn SessionStore>, oidc: Arc<Oidc>, seen: Arc<Session>) {
    let tag = seen.id.log_tag();
    match store.lock_refresh(&seen.id, seen.refresh_at).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::debug!(session = %tag, error = %e, "session refresh postponed: store unavailable");
            return;
        }
    }
    // Read the stored copy: another instance may have refreshed it already.
    let current = match store.load(&seen.id).await {
        Ok(Some(s)) if s.refresh_at == seen.refresh_at => s,
        _ => return,
    };
    let Some(refresh_token) = current.refresh_token.as_ref() else {
        return;
    };
    match oidc.refresh(refresh_token.expose()).await {
        Ok(outcome) if outcome.subject == current.subject => {
            let renewed = Session {
                id: current.id,
                headers: outcome.identity.headers(),
                refresh_at: refresh_at(
                    outcome.id_token.expose(),
                    true,
                    outcome.refresh_token.is_some(),
                ),
                identity: outcome.identity,
                subject: outcome.subject,
                idp_session: outcome.idp_session.or_else(|| current.idp_session.clone()),
                id_token: Some(outcome.id_token),
                access_token: Some(outcome.access_token),
                refresh_token: outcome.refresh_token,
                created_at: current.created_at,
                expires_at: current.expires_at,
            };
            let groups_changed = renewed.identity.groups != current.identity.groups;
            match store.save(Arc::new(renewed)).await {
                Ok(()) => {
                    tracing::info!(user = %current.identity.user, session = %tag, groups_changed, "session refreshed")
                }
                Err(e) => {
                    tracing::warn!(session = %tag, error = %e, "refreshed session could not be stored; retrying")
                }
            }
        }
        Ok(_) => {
            end(
                &*store,
                &current,
                "the refreshed ID token names another subject",
            )
            .await
        }
        Err(LoginError::InvalidGrant(d)) => end(&*store, &current, &d).await,
        Err(e) => tracing::warn!(
            user = %current.identity.user,
            session = %tag,
            error = %e,
            "session refresh failed; the session stays as it is and is retried in {}s",
            REFRESH_LOCK.as_secs()
        ),
    }
}

async fn end(store: &dyn SessionStore, s: &Session, why: &str) {
    match store.remove(&s.id).await {
        Ok(()) => {
            tracing::info!(user = %s.identity.user, session = %s.id.log_tag(), reason = %why, "the identity provider refused the refresh; session ended")
        }
        Err(e) => {
            tracing::warn!(session = %s.id.log_tag(), error = %e, "refresh refused but the session could not be ended; retrying")
        }
    }
}
