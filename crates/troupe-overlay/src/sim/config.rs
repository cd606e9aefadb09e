//! The simulated network's parameters.

use std::time::Duration;

/// How the simulated network behaves. Every random choice of the simulator comes from `seed`.
///
/// Links are TCP-like: FIFO, reliable while they last. `loss` is therefore not a per-message drop
/// (TCP retransmits those; a real node never sees them) but the probability that sending one
/// message **breaks its connection**, as persistent loss eventually does: the message and
/// everything after it on that connection are lost, and both ends get `Input::Disconnected`
/// after `loss_detect`.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Seed of the simulator's RNG (node ids, latencies, loss, scenario choices).
    pub seed: u64,
    /// Mean one-way base delay of a link. Each link's base delay is drawn once, uniformly in
    /// `[0.5, 1.5] x latency`.
    pub latency: Duration,
    /// Extra delay per message, uniform in `[0, jitter)` (FIFO is kept: a message never overtakes
    /// an earlier one on the same connection).
    pub jitter: Duration,
    /// Probability that sending a message breaks its connection (see above).
    pub loss: f64,
    /// How long after a node crashes its peers get `Input::Disconnected` (plus up to the same
    /// again, uniformly, per peer): connection loss or the idle ping noticing.
    pub detect: Duration,
    /// How long after a broken link (loss or partition) both ends get `Input::Disconnected`.
    pub loss_detect: Duration,
    /// How long a `Command::Connect` to a peer behind a partition takes to fail (a connect to a
    /// crashed process fails after one round trip: refused).
    pub connect_timeout: Duration,
    /// How long the driver takes to answer `Command::NeedContacts` with a fresh `Input::Join`.
    pub contacts_delay: Duration,
    /// How many live nodes that fresh `Input::Join` names (the seeds a DNS name resolves to).
    pub contacts: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            loss: 0.0,
            detect: Duration::from_secs(1),
            loss_detect: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(3),
            contacts_delay: Duration::from_secs(1),
            contacts: 3,
        }
    }
}
