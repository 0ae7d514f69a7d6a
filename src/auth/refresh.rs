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
//! exactly one instance ask the IdP. The lock is extended every third of
//! its duration while the IdP round trip runs, so however long
//! `oidc.http_timeout` lets that take, no second instance redeems the same
//! refresh token meanwhile. The winner saves the renewed session only if
//! the stored one is still the copy it started from
//! ([`SessionStore::replace`]): a sign-out, revocation or back-channel
//! logout that lands during the round trip stays in force. The save drops
//! every instance's cached copy. An IdP that rejects the refresh token
//! (`invalid_grant`) ends the session everywhere; an unreachable IdP leaves
//! it as it is until the next attempt.

use std::future::Future;
use std::sync::Arc;

use crate::auth::oidc::{LoginError, Oidc};
use crate::auth::session::{refresh_at, Session, SessionStore, REFRESH_LOCK};

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
    let asked = holding_lock(
        &*store,
        &current,
        oidc.redeem_refresh_token(refresh_token.expose()),
    )
    .await;
    let m = crate::base::metrics::global();
    m.refresh(match &asked {
        Ok(outcome) if outcome.subject == current.subject => "success",
        Ok(_) | Err(LoginError::InvalidGrant(_)) => "ended",
        Err(_) => "failure",
    });
    match asked {
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
            match store.replace(&current, Arc::new(renewed)).await {
                Ok(true) => {
                    tracing::info!(user = %current.identity.user, session = %tag, groups_changed, "session refreshed")
                }
                Ok(false) => {
                    tracing::info!(user = %current.identity.user, session = %tag, "session ended or changed during its refresh; the renewed tokens are dropped")
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

/// Runs `work` while extending the refresh lock of `s` every third of
/// [`REFRESH_LOCK`], so the lock outlasts the work however long it takes.
async fn holding_lock<T>(
    store: &dyn SessionStore,
    s: &Session,
    work: impl Future<Output = T>,
) -> T {
    let mut tick = tokio::time::interval(REFRESH_LOCK / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the lock was just taken
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => match store.extend_refresh(&s.id, s.refresh_at).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(session = %s.id.log_tag(), "refresh lock lapsed while the identity provider was answering; another instance may refresh this session too"),
                Err(e) => tracing::warn!(session = %s.id.log_tag(), error = %e, "refresh lock could not be extended; another instance may refresh this session too"),
            },
        }
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
