//! The executor and time limits: one shared `smol::Executor` run by the main thread and a
//! few more, so connections spread over the cores the way nginx's workers do (blocking
//! filesystem calls still go to smol's blocking pool, `smol::unblock`); and the one way a
//! future is raced against a timer ([`within`], [`until`]).

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use async_io::Timer;
use smol::future::FutureExt;
use smol::{Executor, Task};

use crate::limits::{EXECUTOR_STACK_BYTES, MAX_EXECUTOR_THREADS};

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
            .stack_size(EXECUTOR_STACK_BYTES)
            .spawn(|| smol::block_on(EXECUTOR.run(std::future::pending::<()>())));
        if let Err(e) = spawned {
            crate::error!("warning: cannot start executor thread {i}: {e}");
            break;
        }
    }
    smol::block_on(EXECUTOR.run(main))
}

/// `fut`'s result, or a `TimedOut` error saying `what` did not finish within `limit`.
pub async fn within<T>(
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    fut.or(async {
        Timer::after(limit).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, what))
    })
    .await
}

/// `fut`'s output, or None when `deadline` passes first.
pub async fn until<T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    async { Some(fut.await) }
        .or(async {
            Timer::at(deadline).await;
            None
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn races_against_the_clock() {
        smol::block_on(async {
            let slow = within(Duration::from_millis(10), "the slow thing", async {
                Timer::after(Duration::from_secs(30)).await;
                Ok(1)
            })
            .await;
            let e = slow.expect_err("the timer wins");
            assert_eq!(e.kind(), io::ErrorKind::TimedOut);
            assert_eq!(e.to_string(), "the slow thing");
            let fast = within(Duration::from_secs(30), "fast", async { Ok(2) }).await;
            assert_eq!(fast.unwrap(), 2);
            let soon = Instant::now() + Duration::from_millis(10);
            assert_eq!(until(soon, std::future::pending::<u8>()).await, None);
            let later = Instant::now() + Duration::from_secs(30);
            assert_eq!(until(later, async { 3 }).await, Some(3));
        });
    }
}
