//! A task that wakes itself is polled again at once, not rescheduled.
//!
//! A worker's task drives the Runtime API connections itself, and they
//! talk to it through channels: each message wakes the very task that is
//! running. Tokio treats such a wake as a yield, puts the task at the back
//! of the queue and wakes another worker thread to help (a futex call and,
//! on a VM, an inter-processor interrupt), all on a call's critical path.
//! `Repoll` notices a wake that lands while the future is being polled and
//! polls it again in the same turn; wakes from anywhere else go to the
//! scheduler as usual.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Polls in one turn at most this many times in a row, then yields to the
/// scheduler after all, so a future that keeps waking itself cannot
/// starve the thread.
const MAX_REPOLLS: usize = 32;

pub(crate) struct Repoll<F> {
    future: Pin<Box<F>>,
    state: Arc<State>,
    waker: Waker,
}

#[derive(Default)]
struct State {
    polling: AtomicBool,
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for State {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, SeqCst);
        // The poller looks at `woken` after it stops polling: if it is
        // still polling, it will see this wake and poll again.
        if !self.polling.load(SeqCst) {
            self.task.wake();
        }
    }
}

impl<F: Future> Repoll<F> {
    pub(crate) fn new(future: F) -> Repoll<F> {
        let state = Arc::new(State::default());
        Repoll {
            future: Box::pin(future),
            waker: Waker::from(state.clone()),
            state,
        }
    }
}

impl<F: Future> Future for Repoll<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.state.task.register(cx.waker());
        let mut inner = Context::from_waker(&this.waker);
        for _ in 0..MAX_REPOLLS {
            this.state.woken.store(false, SeqCst);
            this.state.polling.store(true, SeqCst);
            let polled = this.future.as_mut().poll(&mut inner);
            this.state.polling.store(false, SeqCst);
            if polled.is_ready() {
                return polled;
            }
            if !this.state.woken.load(SeqCst) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Messages a future sends itself are taken in the same turn; one from
    /// another task still wakes it.
    #[tokio::test]
    async fn wakes_from_within_are_polled_again_and_from_without_still_wake() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = polls.clone();
        let sender = tx.clone();
        let mut sent = false;
        let mut got = Vec::new();
        let future = std::future::poll_fn(move |cx| {
            counted.fetch_add(1, SeqCst);
            if !sent {
                // Registers the waker, then wakes it from inside the poll.
                assert!(rx.poll_recv(cx).is_pending());
                sender.send(1).unwrap();
                sent = true;
            }
            while let Poll::Ready(Some(n)) = rx.poll_recv(cx) {
                got.push(n);
                if n == 2 {
                    return Poll::Ready(got.clone());
                }
            }
            Poll::Pending
        });
        let task = tokio::spawn(Repoll::new(future));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = polls.load(SeqCst);
        tx.send(2).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("a wake from another task reaches it")
            .unwrap();
        assert_eq!(got, vec![1, 2]);
        // The first turn polled twice (its own wake), the second once.
        assert_eq!(before, 2);
        assert_eq!(polls.load(SeqCst), 3);
    }

    /// A future that wakes itself on every poll yields after a bound.
    #[tokio::test]
    async fn a_future_that_always_wakes_itself_still_yields() {
        let mut polls = 0;
        let future = std::future::poll_fn(move |cx| {
            polls += 1;
            if polls > 3 * MAX_REPOLLS {
                return Poll::Ready(polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        let mut repoll = Repoll::new(future);
        let waker = Waker::from(Arc::new(State::default()));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut repoll).poll(&mut cx).is_pending());
        let done = tokio::time::timeout(Duration::from_secs(5), repoll)
            .await
            .unwrap();
        assert_eq!(done, 3 * MAX_REPOLLS + 1);
    }
}
