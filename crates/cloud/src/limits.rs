//! Rate limits on the endpoints worth guessing at: sign-up, sign-in and codes.
//!
//! Each attempt is counted against every subject it concerns, and refused when any of them is
//! used up: the source network (an IPv4 address, or the /64 an IPv6 address lies in, since one
//! subscriber is usually handed a whole /64), and the phone number or account it targets. So
//! many addresses buy an attacker no more password guesses against one number, and no more
//! sign-up texts to a victim's phone, than one address does.
//!
//! All counting goes through [`Counters`], one trait, so that the counters can later live in a
//! database shared by a region's servers (issue 13) without touching the callers; today they
//! are in memory, per process.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// What is being attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limited {
    Signup,
    Login,
    Verification,
}

/// Whom an attempt is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// The source network: see [`source_network`].
    Network(IpAddr),
    /// A phone number, by its keyed index (never the number itself).
    Phone([u8; 32]),
    /// An account, by user id.
    Account(String),
}

impl Subject {
    /// The network `ip` is counted in.
    pub fn source(ip: IpAddr) -> Subject {
        Subject::Network(source_network(ip))
    }

    fn kind(&self) -> SubjectKind {
        match self {
            Subject::Network(_) => SubjectKind::Network,
            Subject::Phone(_) => SubjectKind::Phone,
            Subject::Account(_) => SubjectKind::Account,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SubjectKind {
    Network,
    Phone,
    Account,
}

/// Bits of an IPv6 address that name one subscriber's network: addresses inside one /64 count
/// as that /64.
pub const IPV6_NETWORK_PREFIX_BITS: u32 = 64;

/// The network an address is counted in: an IPv4 address itself (also when written as an
/// IPv4-mapped IPv6 address), or an IPv6 address's /64 (the rest zeroed).
pub fn source_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = u128::MAX << (128 - IPV6_NETWORK_PREFIX_BITS);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

/// Attempts allowed per subject and window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub attempts: u32,
    pub per: Duration,
}

impl Rate {
    pub fn per_minute(attempts: u32) -> Rate {
        Rate {
            attempts,
            per: Duration::from_secs(60),
        }
    }

    pub fn per_hour(attempts: u32) -> Rate {
        Rate {
            attempts,
            per: Duration::from_secs(3600),
        }
    }
}

/// Where attempts are counted. One implementation per place the counters can live.
pub trait Counters: Send + Sync {
    /// Counts one attempt at `what` against `subject` at `rate`; `Err` with
    /// the wait until the next attempt would be allowed when the bucket is used up.
    fn hit(&self, what: Limited, subject: &Subject, rate: Rate) -> Result<(), Duration>;

    /// Forgets subjects whose quota has fully recovered.
    fn forget_idle(&self);
}

/// Counters in this process's memory (GCRA buckets, one limiter per attempt class and subject
/// kind; each created with its rate on first use).
#[derive(Default)]
pub struct MemoryCounters {
    limiters: std::sync::Mutex<
        std::collections::HashMap<(Limited, SubjectKind, Rate), std::sync::Arc<Limiter>>,
    >,
}

type Limiter = DefaultKeyedRateLimiter<Subject>;

fn quota(rate: Rate) -> Quota {
    let attempts = NonZeroU32::new(rate.attempts).unwrap_or(NonZeroU32::MIN);
    // One attempt is replenished every `per / attempts`; the burst is the whole allowance.
    let period = rate.per / attempts.get();
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_minute(attempts))
        .allow_burst(attempts)
}

impl MemoryCounters {
    fn limiter(&self, what: Limited, kind: SubjectKind, rate: Rate) -> std::sync::Arc<Limiter> {
        let mut limiters = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        limiters
            .entry((what, kind, rate))
            .or_insert_with(|| std::sync::Arc::new(RateLimiter::keyed(quota(rate))))
            .clone()
    }
}

impl Counters for MemoryCounters {
    fn hit(&self, what: Limited, subject: &Subject, rate: Rate) -> Result<(), Duration> {
        self.limiter(what, subject.kind(), rate)
            .check_key(subject)
            .map_err(|not_until| {
                not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
            })
    }

    fn forget_idle(&self) {
        let limiters = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        for limiter in limiters.values() {
            limiter.retain_recent();
        }
    }
}

/// The rates in force: per source network, and per phone number or account.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub signups_per_network: Rate,
    pub logins_per_network: Rate,
    pub verifications_per_network: Rate,
    /// Sign-up texts to one number, whatever the source.
    pub signups_per_phone: Rate,
    /// Password guesses against one number (one account), whatever the source.
    pub logins_per_account: Rate,
}

pub struct RateLimits {
    rates: Rates,
    counters: Box<dyn Counters>,
}

impl RateLimits {
    /// Limits counted in memory.
    pub fn new(rates: Rates) -> RateLimits {
        RateLimits::with_counters(rates, Box::new(MemoryCounters::default()))
    }

    pub fn with_counters(rates: Rates, counters: Box<dyn Counters>) -> RateLimits {
        RateLimits { rates, counters }
    }

    /// Forgets clients whose quota has fully recovered, so that the limiter's memory is bounded
    /// by the clients of the last window, not by every address ever seen.
    pub fn forget_idle(&self) {
        self.counters.forget_idle();
    }

    fn rate(&self, what: Limited, kind: SubjectKind) -> Rate {
        let r = &self.rates;
        match (what, kind) {
            (Limited::Signup, SubjectKind::Network) => r.signups_per_network,
            (Limited::Login, SubjectKind::Network) => r.logins_per_network,
            (Limited::Verification, SubjectKind::Network) => r.verifications_per_network,
            (Limited::Signup, _) => r.signups_per_phone,
            (Limited::Login, _) => r.logins_per_account,
            // A code is bounded per verification by `code_attempts_max`, and verifications per
            // number by the sign-up rate; a verification is never counted against a number.
            (Limited::Verification, _) => r.verifications_per_network,
        }
    }

    /// Counts an attempt at `what` against each of `subjects` (all of them, so that a refused
    /// attempt still uses up the others: trying is what is limited).
    ///
    /// # Errors
    /// [`ApiError::RateLimited`] when any subject has used up its quota for `what`.
    pub fn check(&self, what: Limited, subjects: &[Subject]) -> Result<(), ApiError> {
        let mut wait: Option<Duration> = None;
        for subject in subjects {
            let rate = self.rate(what, subject.kind());
            if let Err(w) = self.counters.hit(what, subject, rate) {
                wait = Some(wait.map_or(w, |before| before.max(w)));
            }
        }
        match wait {
            None => Ok(()),
            Some(wait) => Err(ApiError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            }),
        }
    }

    /// [`RateLimits::check`] for an attempt from `ip` alone (before the target is known).
    ///
    /// # Errors
    /// As [`RateLimits::check`].
    pub fn check_source(&self, what: Limited, ip: IpAddr) -> Result<(), ApiError> {
        self.check(what, &[Subject::source(ip)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v6(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_in_one_ipv6_64_count_as_that_64() {
        let net = source_network(v6("2001:db8:1:2:aaaa:bbbb:cccc:dddd"));
        assert_eq!(net, v6("2001:db8:1:2::"));
        assert_eq!(source_network(v6("2001:db8:1:2::1")), net);
        assert_eq!(source_network(v6("2001:db8:1:2:ffff:ffff:ffff:ffff")), net);
        assert_ne!(source_network(v6("2001:db8:1:3::1")), net);
        // IPv4 addresses each count alone, however they are written.
        assert_eq!(source_network(v6("::ffff:192.0.2.7")), v6("192.0.2.7"),);
        assert_ne!(
            source_network(v6("192.0.2.7")),
            source_network(v6("192.0.2.8"))
        );
    }

    fn rates(n: u32) -> Rates {
        Rates {
            signups_per_network: Rate::per_minute(n),
            logins_per_network: Rate::per_minute(n),
            verifications_per_network: Rate::per_minute(n),
            signups_per_phone: Rate::per_hour(n),
            logins_per_account: Rate::per_hour(n),
        }
    }

    #[test]
    fn many_addresses_in_one_64_share_one_quota() {
        let limits = RateLimits::new(rates(3));
        let mut allowed = 0;
        for host in 1..=20u128 {
            let ip = IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) | host));
            if limits.check_source(Limited::Login, ip).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 3);
        // Another /64 has its own.
        assert!(
            limits
                .check_source(Limited::Login, v6("2001:db8:0:1::1"))
                .is_ok()
        );
    }

    #[test]
    fn one_number_is_limited_whatever_the_source() {
        let limits = RateLimits::new(rates(4));
        let phone = Subject::Phone([7; 32]);
        let mut allowed = 0;
        for n in 1..=50u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, n));
            if limits
                .check(Limited::Signup, &[Subject::source(ip), phone.clone()])
                .is_ok()
            {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 4);
        assert!(
            limits
                .check(
                    Limited::Signup,
                    &[
                        Subject::source(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                        Subject::Phone([8; 32])
                    ]
                )
                .is_ok()
        );
    }
}
