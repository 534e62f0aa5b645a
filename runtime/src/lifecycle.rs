//! What both services share about running as a process: a handle to stop a started
//! service and wait for it, and the signals that ask for a clean shutdown.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::startup::Background;

/// A started service. Dropping it does not stop it; call [`ServiceHandle::stop`].
#[derive(Debug)]
pub struct ServiceHandle {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl ServiceHandle {
    /// `task` must end soon after `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken, task: JoinHandle<()>) -> Self {
        Self { shutdown, task }
    }

    /// Starts a service whose request loop is `serve` (it must end soon after `shutdown` is
    /// cancelled); once it has ended, `background` is stopped too.
    pub fn spawn(
        name: &'static str,
        shutdown: CancellationToken,
        serve: impl Future<Output = ()> + Send + 'static,
        background: Background,
    ) -> Self {
        let task = tokio::spawn(async move {
            serve.await;
            background.stop().await;
            tracing::info!("{name} stopped");
        });
        Self::new(shutdown, task)
    }

    /// Asks the service to stop, and waits until it has.
    pub async fn stop(self) {
        self.shutdown.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "a service task failed");
        }
    }

    /// Resolves when the service has stopped (after `stop`, a signal, or on its own).
    pub async fn stopped(&mut self) {
        if let Err(e) = (&mut self.task).await {
            tracing::error!(error = %e, "a service task failed");
        }
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// Stops `service` on the first shutdown signal, then waits until it has stopped.
pub async fn run_until_signal(mut service: ServiceHandle) {
    let stop = service.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing the work in flight");
        stop.cancel();
    });
    service.stopped().await;
}
