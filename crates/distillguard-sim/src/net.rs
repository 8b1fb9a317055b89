//! Client addresses and user agents.
//!
//! Only reserved ranges are used, so simulated traffic can never name a real host:
//! - residential IPv4: 100.64.0.0/10 (carrier-grade NAT space, which is what many home and
//!   mobile users really present), residential IPv6: 2001:db8::/32 with one /64 per household;
//! - datacenter: 198.18.0.0/15, carved into "providers" of 4,096 addresses each;
//! - commercial VPN / proxy exits: 203.0.113.0/24 and 198.51.100.0/24, shared by benign VPN
//!   users and by attack proxies alike (an exit IP alone proves nothing);
//! - enterprise NAT gateways: 192.0.2.0/24.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::Rng;

use crate::dist::{chance, pick, SimRng};

pub(crate) fn residential_v4(rng: &mut SimRng) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        100,
        rng.gen_range(64..128),
        rng.gen_range(0..=255),
        rng.gen_range(1..=254),
    ))
}

/// A household's /64, as two 16-bit groups under 2001:db8::/32.
pub(crate) fn household_v6(rng: &mut SimRng) -> (u16, u16) {
    (rng.gen(), rng.gen())
}

/// An address in the household's prefix with a fresh privacy-extension interface id.
pub(crate) fn residential_v6(rng: &mut SimRng, prefix: (u16, u16)) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0x0db8,
        prefix.0,
        prefix.1,
        rng.gen(),
        rng.gen(),
        rng.gen(),
        rng.gen(),
    ))
}

/// Number of simulated hosting providers in 198.18.0.0/15.
pub(crate) const PROVIDERS: u8 = 32;

pub(crate) fn datacenter_v4(rng: &mut SimRng, provider: u8) -> IpAddr {
    // Each provider owns 16 consecutive /24s.
    let block = u32::from(provider % PROVIDERS) * 16 + rng.gen_range(0..16);
    let third = (block % 256) as u8;
    let second = 18 + (block / 256) as u8;
    IpAddr::V4(Ipv4Addr::new(198, second, third, rng.gen_range(2..=254)))
}

/// A commercial VPN / residential-proxy exit.
pub(crate) fn proxy_exit(rng: &mut SimRng) -> IpAddr {
    if chance(rng, 0.5) {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, rng.gen_range(1..=254)))
    } else {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, rng.gen_range(1..=254)))
    }
}

pub(crate) fn enterprise_nat(rng: &mut SimRng) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, rng.gen_range(1..=254)))
}

/// Official SDK user agents: thousands of unrelated customers send exactly these strings.
pub(crate) const SDK_AGENTS: &[&str] = &[
    "OpenAI/Python 1.54.3",
    "OpenAI/Python 1.54.4",
    "OpenAI/Python 1.55.0",
    "OpenAI/Python 1.52.2",
    "AsyncOpenAI/Python 1.54.3",
    "OpenAI/JS 4.73.0",
    "OpenAI/JS 4.71.1",
    "OpenAI/Go 0.1.0-alpha.38",
];

/// The most common SDK build at the time of the run (most hydra operators pick it too).
pub(crate) const POPULAR_SDK: &str = "OpenAI/Python 1.54.3";

pub(crate) const HTTP_LIBRARIES: &[&str] = &[
    "python-requests/2.32.3",
    "python-httpx/0.27.2",
    "aiohttp/3.10.10",
    "curl/8.5.0",
    "node-fetch/2.7.0",
    "Go-http-client/2.0",
    "reqwest/0.12.9",
];

/// Third-party chat clients and browsers that casual users call the API through.
pub(crate) const CHAT_CLIENTS: &[&str] = &[
    "TypingMind/1.9.3 (Macintosh; Intel Mac OS X 10_15_7)",
    "Chatbox/1.5.1 (Windows NT 10.0; Win64; x64)",
    "LibreChat/0.7.5",
    "BoltAI/1.27.2 (macOS 14.6)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
    "Raycast/1.86.1 (macOS)",
];

/// Coding agents developers run with their own API key.
pub(crate) const AGENT_CLIENTS: &[&str] = &[
    "aider/0.62.1",
    "Cline/3.2.0",
    "opencode/0.4.2",
    "OpenAI/Python 1.54.3",
    "continue/0.9.231",
];

pub(crate) const EVAL_AGENTS: &[&str] = &[
    "lm-eval-harness/0.4.5 OpenAI/Python 1.52.2",
    "inspect_ai/0.3.49 OpenAI/Python 1.54.3",
    "helm/0.5.4 python-requests/2.32.3",
    "OpenAI/Python 1.54.3",
];

pub(crate) fn sdk_agent(rng: &mut SimRng) -> String {
    if chance(rng, 0.45) {
        POPULAR_SDK.to_string()
    } else {
        pick(rng, SDK_AGENTS).to_string()
    }
}

pub(crate) fn chat_client(rng: &mut SimRng) -> String {
    pick(rng, CHAT_CLIENTS).to_string()
}

/// A product's own backend user agent, e.g. `Lumen-Backend/2.3.1`.
pub(crate) fn custom_agent(rng: &mut SimRng) -> String {
    const NAMES: &[&str] = &[
        "Lumen", "Quill", "Harbor", "Nimbus", "Orchard", "Pylon", "Sable", "Tandem", "Vellum",
        "Wisp", "Kestrel", "Marlin",
    ];
    const KINDS: &[&str] = &["Backend", "Gateway", "Worker", "Service", "Bot"];
    format!(
        "{}-{}/{}.{}.{}",
        pick(rng, NAMES),
        pick(rng, KINDS),
        rng.gen_range(1..5),
        rng.gen_range(0..20),
        rng.gen_range(0..10)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::stream;

    #[test]
    fn simulated_addresses_stay_in_reserved_ranges() {
        let mut rng = stream(9, 9);
        for provider in 0..PROVIDERS {
            let IpAddr::V4(v4) = datacenter_v4(&mut rng, provider) else {
                panic!("datacenter addresses are IPv4");
            };
            let [a, b, ..] = v4.octets();
            assert_eq!(a, 198);
            assert!(b == 18 || b == 19, "{v4}");
        }
        let IpAddr::V4(home) = residential_v4(&mut rng) else {
            panic!("residential v4 expected");
        };
        assert_eq!(home.octets()[0], 100);
        assert!((64..128).contains(&home.octets()[1]));
        let prefix = household_v6(&mut rng);
        let v6 = residential_v6(&mut rng, prefix);
        assert!(v6.to_string().starts_with("2001:db8:"));
    }
}
