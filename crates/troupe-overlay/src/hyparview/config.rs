//! HyParView's parameters.

use std::time::Duration;

use thiserror::Error;

/// HyParView's parameters. [`Default`] gives Partisan's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HyParViewConfig {
    /// Largest active view (neighbours with a connection). Partisan: 6.
    pub active_max: usize,
    /// Below this many neighbours a node promotes from its passive view at once, not only on the
    /// promotion timer. Partisan: 3.
    pub active_min: usize,
    /// Largest passive view (known peers without a connection). Partisan: 30.
    pub passive_max: usize,
    /// Active random walk length: the TTL of FORWARD_JOIN and SHUFFLE. Partisan: 6.
    pub arwl: u32,
    /// Passive random walk length: a FORWARD_JOIN arriving with this TTL adds the new node to the
    /// passive view. Partisan: 6.
    pub prwl: u32,
    /// How often a node shuffles its views with a random walk. Partisan: 10 s.
    pub shuffle_interval: Duration,
    /// Active-view entries a SHUFFLE carries. Partisan: 3.
    pub shuffle_active: usize,
    /// Passive-view entries a SHUFFLE carries. Partisan: 4.
    pub shuffle_passive: usize,
    /// How often a node below `active_max` neighbours promotes a random passive peer. Partisan: 5 s.
    pub promotion_interval: Duration,
    /// How often the driver should feed `Input::Tick`.
    pub tick_interval: Duration,
    /// A NEIGHBOR request or a queued message waiting longer than this for its connection or reply
    /// is given up (the peer counts as failed).
    pub request_timeout: Duration,
    /// A connection outside the active view (used for a JOIN, a shuffle reply or a rejected
    /// NEIGHBOR request) is closed after being idle this long.
    pub transient_linger: Duration,
    /// Most connections outside the active view at once; further incoming ones are closed.
    pub max_transient: usize,
    /// Most remembered contacts (the addresses given with `Input::Join`).
    pub max_contacts: usize,
    /// Least time between two `Command::NeedContacts`.
    pub need_contacts_interval: Duration,
    /// After its JOIN went out, a node left without neighbours (its contact dropped it, as a
    /// busy contact does) waits this long for the FORWARD_JOIN walks to bring neighbours before
    /// it counts as isolated.
    pub join_grace: Duration,
    /// A node below `active_min` neighbours with no passive peer left to try re-joins through a
    /// contact (the repair of islands left by mass joins), at most once per this interval.
    pub starving_rejoin_interval: Duration,
    /// Most remembered *suspects*: active neighbours lost to a failure (the connection lost
    /// without a DISCONNECT). Not in the paper or Partisan: see `heal_interval`.
    pub max_suspects: usize,
    /// Every this often a node tries to reconnect to one suspect (in turn); one that answers
    /// was cut off by a partition that has healed (or restarted), and is asked to be a neighbour
    /// with high priority. Without this, two sides of a long partition end with full active views
    /// of their own side, nobody promotes, and the healed network stays split. Not in the paper
    /// or Partisan.
    pub heal_interval: Duration,
    /// Seed of the protocol's random number generator.
    pub seed: u64,
}

impl Default for HyParViewConfig {
    fn default() -> Self {
        HyParViewConfig {
            active_max: 6,
            active_min: 3,
            passive_max: 30,
            arwl: 6,
            prwl: 6,
            shuffle_interval: Duration::from_secs(10),
            shuffle_active: 3,
            shuffle_passive: 4,
            promotion_interval: Duration::from_secs(5),
            tick_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            transient_linger: Duration::from_secs(2),
            max_transient: 256,
            max_contacts: 16,
            need_contacts_interval: Duration::from_secs(5),
            join_grace: Duration::from_secs(2),
            starving_rejoin_interval: Duration::from_secs(10),
            max_suspects: 8,
            heal_interval: Duration::from_secs(30),
            seed: 0,
        }
    }
}

impl HyParViewConfig {
    /// The defaults with this RNG seed.
    pub fn with_seed(seed: u64) -> Self {
        HyParViewConfig { seed, ..Self::default() }
    }

    /// Checks that the parameters make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.active_max == 0 {
            return Err(ConfigError::NoActiveView);
        }
        if self.active_min > self.active_max {
            return Err(ConfigError::MinAboveMax { min: self.active_min, max: self.active_max });
        }
        if self.prwl > self.arwl {
            return Err(ConfigError::PrwlAboveArwl { prwl: self.prwl, arwl: self.arwl });
        }
        for (name, d) in [
            ("shuffle_interval", self.shuffle_interval),
            ("promotion_interval", self.promotion_interval),
            ("tick_interval", self.tick_interval),
            ("heal_interval", self.heal_interval),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroInterval(name));
            }
        }
        Ok(())
    }

    /// Most members a SHUFFLE or SHUFFLE_REPLY may carry (longer lists are cut).
    pub fn shuffle_len(&self) -> usize {
        1 + self.shuffle_active + self.shuffle_passive
    }
}

/// A [`HyParViewConfig`] that cannot work.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `active_max` is zero.
    #[error("active_max must be at least 1")]
    NoActiveView,
    /// `active_min` is larger than `active_max`.
    #[error("active_min ({min}) is larger than active_max ({max})")]
    MinAboveMax {
        /// The configured minimum.
        min: usize,
        /// The configured maximum.
        max: usize,
    },
    /// `prwl` is larger than `arwl`, so no FORWARD_JOIN would ever reach the passive view.
    #[error("prwl ({prwl}) is larger than arwl ({arwl})")]
    PrwlAboveArwl {
        /// The passive random walk length.
        prwl: u32,
        /// The active random walk length.
        arwl: u32,
    },
    /// A period is zero.
    #[error("{0} must not be zero")]
    ZeroInterval(&'static str),
}
