//! Threads and tasks the application starts and owns: a thread that cannot
//! start fails start-up, and every async task is stopped and awaited at
//! shutdown.

use std::future::Future;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::StartError;

/// Starts a named thread, or says which one could not start.
pub(crate) fn spawn_thread<T: Send + 'static>(
    name: String,
    run: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, StartError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(run)
        .map_err(|source| StartError::Thread { name, source })
}

/// An async background task of the application: told to stop, then awaited.
pub struct Task {
    name: &'static str,
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

impl Task {
    /// Spawns `run(stop)` on the current runtime. `run` must return soon
    /// after `stop` resolves, which happens on [`Task::stop`], or when the
    /// task is dropped without being stopped (a start-up that failed later).
    pub(crate) fn spawn<F, Fut>(name: &'static str, run: F) -> Self
    where
        F: FnOnce(oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let handle = actix_web::rt::spawn(run(stopped));
        Self { name, stop, handle }
    }

    /// Tells the task to stop and waits until it has.
    pub async fn stop(self) {
        // The task may have ended on its own already.
        let _ = self.stop.send(());
        if self.handle.await.is_err() {
            log::error!("the {} task panicked", self.name);
        }
    }
}
