//! Per-client rate limits on the endpoints worth guessing at: sign-up, sign-in and codes.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

pub struct RateLimits {
    signups: DefaultKeyedRateLimiter<IpAddr>,
    logins: DefaultKeyedRateLimiter<IpAddr>,
    verifications: DefaultKeyedRateLimiter<IpAddr>,
}

#[derive(Debug, Clone, Copy)]
pub enum Limited {
    Signup,
    Login,
    Verification,
}

fn per_minute(n: u32) -> DefaultKeyedRateLimiter<IpAddr> {
    let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_minute(n))
}

impl RateLimits {
    pub fn new(signups: u32, logins: u32, verifications: u32) -> RateLimits {
        RateLimits {
            signups: per_minute(signups),
            logins: per_minute(logins),
            verifications: per_minute(verifications),
        }
    }

    /// Forgets clients whose quota has fully recovered, so that the limiter's memory is bounded
    /// by the clients of the last minute, not by every address ever seen.
    pub fn forget_idle(&self) {
        self.signups.retain_recent();
        self.logins.retain_recent();
        self.verifications.retain_recent();
    }

    /// # Errors
    /// [`ApiError::RateLimited`] when `client` has used up its quota for `what`.
    pub fn check(&self, what: Limited, client: IpAddr) -> Result<(), ApiError> {
        let limiter = match what {
            Limited::Signup => &self.signups,
            Limited::Login => &self.logins,
            Limited::Verification => &self.verifications,
        };
        limiter.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            ApiError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            }
        })
    }
}
