//! The executor: one shared `smol::Executor` run by the main thread and a few more, so
//! connections spread over the cores the way nginx's workers do. Blocking filesystem calls
//! still go to smol's blocking pool (`smol::unblock`).

use std::future::Future;

use smol::{Executor, Task};

use crate::limits::MAX_EXECUTOR_THREADS;

static EXECUTOR: Executor<'static> = Executor::new();

/// Run `fut` on the shared executor.
pub fn spawn<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Task<T> {
    EXECUTOR.spawn(fut)
}

/// How many threads run the executor: one per core, at most `MAX_EXECUTOR_THREADS`.
pub fn thread_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_EXECUTOR_THREADS)
}

/// Start the helper threads (`threads - 1`), then run `main` on this thread until it ends.
/// The helper threads end with the process.
pub fn block_on<T>(threads: usize, main: impl Future<Output = T>) -> T {
    for i in 1..threads {
        let spawned = std::thread::Builder::new()
            .name(format!("pacserve-{i}"))
            // Tasks keep their state on the heap; the threads need little stack.
            .stack_size(256 * 1024)
            .spawn(|| smol::block_on(EXECUTOR.run(std::future::pending::<()>())));
        if let Err(e) = spawned {
            crate::error!("warning: cannot start executor thread {i}: {e}");
            break;
        }
    }
    smol::block_on(EXECUTOR.run(main))
}
