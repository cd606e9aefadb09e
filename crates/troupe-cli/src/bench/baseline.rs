//! The same workloads written the plain way: one tokio task per actor, tokio mpsc channels for
//! mailboxes, oneshot channels for replies. The yardstick troupe's numbers are divided by.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot};

use super::local::{Latency, MAILBOX};

pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().expect("tokio runtime")
}

enum CounterMsg {
    Add(u64),
    Get(oneshot::Sender<u64>),
}

fn spawn_counter(rt: &tokio::runtime::Handle) -> mpsc::Sender<CounterMsg> {
    let (tx, mut rx) = mpsc::channel(MAILBOX);
    rt.spawn(async move {
        let mut count = 0u64;
        while let Some(msg) = rx.recv().await {
            match msg {
                CounterMsg::Add(n) => count += n,
                CounterMsg::Get(reply) => {
                    let _ = reply.send(count);
                }
            }
        }
    });
    tx
}

/// `n` tells from one task to another, then one request to confirm the count.
pub fn tell(workers: usize, n: u64) -> Duration {
    let rt = runtime(workers);
    let counter = spawn_counter(rt.handle());
    rt.block_on(async move {
        let start = Instant::now();
        let sender = tokio::spawn(async move {
            for _ in 0..n {
                counter.send(CounterMsg::Add(1)).await.expect("send");
            }
            let (tx, rx) = oneshot::channel();
            counter.send(CounterMsg::Get(tx)).await.expect("send");
            rx.await.expect("reply")
        });
        let count = sender.await.expect("join");
        assert_eq!(count, n, "baseline tell lost messages");
        start.elapsed()
    })
}

/// Two tasks bounce a ball `n` times.
pub fn pingpong(workers: usize, n: u64) -> Duration {
    let rt = runtime(workers);
    rt.block_on(async move {
        let (to_pong, mut pong_rx) = mpsc::channel::<u64>(MAILBOX);
        let (to_ping, mut ping_rx) = mpsc::channel::<u64>(MAILBOX);
        tokio::spawn(async move {
            while let Some(v) = pong_rx.recv().await {
                if to_ping.send(v).await.is_err() {
                    break;
                }
            }
        });
        let start = Instant::now();
        let ping = tokio::spawn(async move {
            let mut rounds = 0u64;
            to_pong.send(0).await.expect("send");
            while let Some(v) = ping_rx.recv().await {
                rounds += 1;
                if rounds == n {
                    return v;
                }
                to_pong.send(v + 1).await.expect("send");
            }
            u64::MAX
        });
        let last = ping.await.expect("join");
        assert_eq!(last, n - 1, "baseline pingpong lost the ball");
        start.elapsed()
    })
}

/// A token passes `hops` times around a ring of `size` tasks.
pub fn ring(workers: usize, size: usize, hops: u64) -> Duration {
    let rt = runtime(workers);
    rt.block_on(async move {
        let (done_tx, done_rx) = oneshot::channel::<u64>();
        let done = Arc::new(parking_lot::Mutex::new(Some(done_tx)));
        let channels: Vec<_> = (0..size).map(|_| mpsc::channel::<u64>(MAILBOX)).collect();
        let senders: Vec<_> = channels.iter().map(|(tx, _)| tx.clone()).collect();
        for (i, (_, mut rx)) in channels.into_iter().enumerate() {
            let next = senders[(i + 1) % size].clone();
            let done = done.clone();
            tokio::spawn(async move {
                while let Some(left) = rx.recv().await {
                    if left == 0 {
                        if let Some(tx) = done.lock().take() {
                            let _ = tx.send(hops);
                        }
                        return;
                    }
                    if next.send(left - 1).await.is_err() {
                        return;
                    }
                }
            });
        }
        let start = Instant::now();
        senders[0].send(hops).await.expect("send");
        let got = done_rx.await.expect("ring finished");
        assert_eq!(got, hops);
        start.elapsed()
    })
}

/// Spawn `n` task+channel pairs, one message and one request each, then stop them all.
pub fn spawn(workers: usize, n: usize) -> Duration {
    let rt = runtime(workers);
    rt.block_on(async move {
        let start = Instant::now();
        let mut actors = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, mut rx) = mpsc::channel::<CounterMsg>(MAILBOX);
            let handle = tokio::spawn(async move {
                let mut count = 0u64;
                while let Some(msg) = rx.recv().await {
                    match msg {
                        CounterMsg::Add(v) => count += v,
                        CounterMsg::Get(reply) => {
                            let _ = reply.send(count);
                        }
                    }
                }
            });
            tx.send(CounterMsg::Add(1)).await.expect("send");
            actors.push((tx, handle));
        }
        for (tx, _) in &actors {
            let (reply, rx) = oneshot::channel();
            tx.send(CounterMsg::Get(reply)).await.expect("send");
            assert_eq!(rx.await.expect("reply"), 1);
        }
        let handles: Vec<_> = actors.into_iter().map(|(tx, h)| (drop(tx), h).1).collect();
        for h in handles {
            h.await.expect("join");
        }
        start.elapsed()
    })
}

/// One task asks another `n` times in sequence (with a timeout, as troupe's ask has).
pub fn ask(workers: usize, n: u64) -> Latency {
    let rt = runtime(workers);
    let counter = spawn_counter(rt.handle());
    rt.block_on(async move {
        tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            for _ in 0..n {
                let t = Instant::now();
                let (tx, rx) = oneshot::channel();
                counter.send(CounterMsg::Get(tx)).await.expect("send");
                let v = tokio::time::timeout(Duration::from_secs(5), rx).await.expect("in time").expect("reply");
                assert_eq!(v, 0);
                hist.record(t.elapsed().as_nanos() as u64).expect("record");
            }
            Latency::from_histogram(&hist)
        })
        .await
        .expect("join")
    })
}

enum BigMsg {
    Ping(usize),
    Pong,
}

/// Savina "Big": `actors` tasks each send `pings` pings to random peers, who answer with pongs.
/// Returns (elapsed, messages).
pub fn big(workers: usize, actors: usize, pings: u64) -> (Duration, u64) {
    let rt = runtime(workers);
    rt.block_on(async move {
        let channels: Vec<_> = (0..actors).map(|_| mpsc::channel::<BigMsg>(MAILBOX)).collect();
        let peers: Arc<Vec<mpsc::Sender<BigMsg>>> = Arc::new(channels.iter().map(|(tx, _)| tx.clone()).collect());
        let (done_tx, mut done_rx) = mpsc::channel::<u64>(actors);
        let start = Instant::now();
        for (index, (_, mut rx)) in channels.into_iter().enumerate() {
            let peers = peers.clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                let mut rng = crate::rng::XorShift::new(index as u64);
                let mut left = pings;
                let mut handled = 0u64;
                let send_ping = |rng: &mut crate::rng::XorShift| {
                    let mut target = rng.below(peers.len() as u64) as usize;
                    if target == index {
                        target = (target + 1) % peers.len();
                    }
                    target
                };
                let first = send_ping(&mut rng);
                peers[first].send(BigMsg::Ping(index)).await.expect("send");
                left -= 1;
                while let Some(msg) = rx.recv().await {
                    handled += 1;
                    match msg {
                        BigMsg::Ping(from) => {
                            if peers[from].send(BigMsg::Pong).await.is_err() {
                                return;
                            }
                        }
                        BigMsg::Pong => {
                            if left == 0 {
                                let _ = done.send(handled).await;
                            } else {
                                left -= 1;
                                let target = send_ping(&mut rng);
                                if peers[target].send(BigMsg::Ping(index)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
        }
        for _ in 0..actors {
            done_rx.recv().await.expect("done");
        }
        let elapsed = start.elapsed();
        (elapsed, actors as u64 * pings * 2)
    })
}
