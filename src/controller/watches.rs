//! The watches that drive reconciles: the `--ingress` Ingress (feeding the public URLs), the
//! ZoomConnections themselves, the token Secrets they own, and the metadata of credentials
//! Secrets (never their contents).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{AuthType, ZoomConnection, MANAGED_BY_LABEL};
use crate::urls::{derive_public_urls, UrlSource};

use super::{error_policy, reconcile, Context, UrlState};

/// Watches the `--ingress` Ingress and publishes the derived public URLs.
pub async fn watch_public_urls(
    client: Client,
    source: UrlSource,
    tx: watch::Sender<UrlState>,
    shutdown: CancellationToken,
) {
    let UrlSource::Ingress { namespace, name } = &source else {
        let _ = tx.send(Some(derive_public_urls(&source, None)));
        return;
    };
    let api: Api<Ingress> = Api::namespaced(client, namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, cfg).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut current: Option<Ingress> = None;
    let mut init: Option<Ingress> = None;
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = stream.next() => e,
        };
        let Some(event) = event else { return };
        match event {
            Ok(watcher::Event::Apply(ing)) => current = Some(ing),
            Ok(watcher::Event::Delete(_)) => current = None,
            Ok(watcher::Event::Init) => init = None,
            Ok(watcher::Event::InitApply(ing)) => init = Some(ing),
            Ok(watcher::Event::InitDone) => current = init.take(),
            Err(e) => {
                tracing::warn!(error = %e, "watching the Ingress failed; retrying");
                continue;
            }
        }
        let derived = Some(derive_public_urls(&source, current.as_ref()));
        tx.send_if_modified(|old| {
            if *old == derived {
                false
            } else {
                *old = derived.clone();
                true
            }
        });
    }
}

/// Runs the controller until `shutdown` fires. Called by the lease holder.
pub async fn run_controller(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let namespaces = &ctx.config.watch_namespaces;
    // One namespace: watch just it (RBAC can then be a Role). Several: watch all and skip
    // the others in reconcile, rather than running one cache per namespace.
    let (zcs, secrets): (Api<ZoomConnection>, Api<Secret>) = match namespaces.as_slice() {
        [ns] => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        _ => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let watch_cfg = watcher::Config::default();
    let controller = Controller::new(zcs, watch_cfg.clone());
    let store: Store<ZoomConnection> = controller.store();
    if let Ok(mut slot) = ctx.connections.write() {
        *slot = Some(store.clone());
    }

    // Credentials Secrets: metadata only, so the contents of Secrets we do not manage are never
    // cached; a change re-reconciles the connections that reference the Secret by name.
    let mapper_store = store.clone();
    let default_app = ctx.config.default_app_secret.clone();
    let secret_meta: Api<PartialObjectMeta<Secret>> = match namespaces.as_slice() {
        [ns] => Api::namespaced(client.clone(), ns),
        _ => Api::all(client.clone()),
    };
    let credential_changes = watcher(secret_meta, watch_cfg.clone())
        .default_backoff()
        .touched_objects()
        .predicate_filter(
            kube::runtime::predicates::resource_version,
            Default::default(),
        );
    let token_secrets = watcher(
        secrets,
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}=zoom-operator")),
    )
    .default_backoff()
    .touched_objects()
    .predicate_filter(
        kube::runtime::predicates::resource_version,
        Default::default(),
    );

    let url_changes =
        tokio_stream::wrappers::WatchStream::from_changes(ctx.urls.clone()).map(|_| ());
    let allowed: Vec<String> = namespaces.clone();
    controller
        .owns_stream(token_secrets)
        .watches_stream(credential_changes, move |secret| {
            let ns = secret.metadata.namespace.clone().unwrap_or_default();
            let name = secret.metadata.name.clone().unwrap_or_default();
            let is_default_app = default_app
                .as_ref()
                .is_some_and(|(dns, dname)| *dns == ns && *dname == name);
            mapper_store
                .state()
                .into_iter()
                .filter(|zc| {
                    if is_default_app && zc.spec.auth_type == AuthType::DefaultOAuth {
                        return true;
                    }
                    zc.metadata.namespace.as_deref() == Some(ns.as_str())
                        && zc
                            .spec
                            .credentials_ref
                            .as_ref()
                            .is_some_and(|r| r.name == name)
                })
                .map(|zc| ObjectRef::from_obj(&*zc))
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(url_changes)
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            move |zc, ctx: Arc<Context>| {
                let keep = allowed.is_empty()
                    || allowed
                        .iter()
                        .any(|ns| zc.metadata.namespace.as_deref() == Some(ns.as_str()));
                async move {
                    if keep {
                        reconcile(zc, ctx).await
                    } else {
                        Ok(Action::await_change())
                    }
                }
            },
            error_policy,
            ctx,
        )
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                // Reconcile errors are logged by error_policy; a deleted object's queued
                // retry finding nothing is expected.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..))
                | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!(error = %e, "controller error"),
            }
        })
        .await;
}
