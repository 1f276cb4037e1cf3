//! A name resolver that does not spawn a thread per request.
//!
//! ureq resolves the host of *every* request, even when a pooled keep-alive
//! connection is then reused, and whenever a timeout applies (always, here)
//! its default resolver runs the lookup on a freshly spawned thread. At tens
//! of thousands of requests a second that thread is most of the cost. This
//! resolver answers IP-literal hosts directly and keeps successful name
//! lookups for [`CACHE_TTL`]; only a cache miss goes to ureq's resolver.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::Mutex,
    time::{Duration, Instant},
};

use ureq::{
    Error,
    config::Config,
    http::Uri,
    unversioned::{
        resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver},
        transport::NextTimeout,
    },
};

/// How long a successful name lookup is reused.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(5);

/// How many host names are cached at most (a worker usually talks to few).
const CACHE_ENTRIES: usize = 64;

/// A failed lookup of a host name; `classify` maps it to `dns`.
#[derive(Debug, thiserror::Error)]
#[error("could not resolve host {host}: {source}")]
pub(crate) struct DnsError {
    host: String,
    source: io::Error,
}

impl DnsError {
    pub(crate) fn new(host: &str, source: io::Error) -> Self {
        Self {
            host: host.to_owned(),
            source,
        }
    }
}

struct Entry {
    host: Box<str>,
    port: u16,
    at: Instant,
    addrs: ResolvedSocketAddrs,
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct CachingResolver {
    inner: DefaultResolver,
    cache: Mutex<Vec<Entry>>,
}

impl std::fmt::Debug for CachingResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingResolver").finish_non_exhaustive()
    }
}

/// The port of `uri`, explicit or the scheme's default (`http`/`https` only).
fn port_of(uri: &Uri) -> Option<u16> {
    let authority = uri.authority()?;
    authority.port_u16().or(match uri.scheme_str()? {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })
}

/// The IP address of an IP-literal host (`127.0.0.1`, `[::1]`).
fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

impl CachingResolver {
    fn cached(&self, host: &str, port: u16, now: Instant) -> Option<ResolvedSocketAddrs> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let i = cache
            .iter()
            .position(|e| e.port == port && *e.host == *host)?;
        if now.duration_since(cache[i].at) < CACHE_TTL {
            Some(cache[i].addrs.clone())
        } else {
            cache.swap_remove(i);
            None
        }
    }

    fn store(&self, host: &str, port: u16, now: Instant, addrs: &ResolvedSocketAddrs) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|e| {
            !(e.port == port && *e.host == *host) && now.duration_since(e.at) < CACHE_TTL
        });
        if cache.len() >= CACHE_ENTRIES {
            // Entries are appended, so the first is the oldest.
            cache.remove(0);
        }
        cache.push(Entry {
            host: host.into(),
            port,
            at: now,
            addrs: addrs.clone(),
        });
    }
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        let (Some(host), Some(port)) = (uri.host(), port_of(uri)) else {
            // Unusual URI (no host, other scheme): ureq's own checks and errors.
            return self.inner.resolve(uri, config, timeout);
        };
        if let Some(ip) = ip_literal(host) {
            let mut addrs = self.empty();
            for a in config
                .ip_family()
                .keep_wanted(std::iter::once(SocketAddr::new(ip, port)))
            {
                addrs.push(a);
            }
            return if addrs.is_empty() {
                Err(Error::HostNotFound)
            } else {
                Ok(addrs)
            };
        }
        let now = Instant::now();
        if let Some(addrs) = self.cached(host, port, now) {
            return Ok(addrs);
        }
        let addrs = self
            .inner
            .resolve(uri, config, timeout)
            .map_err(|e| match e {
                // `ToSocketAddrs` reports lookup failures as plain i/o errors.
                Error::Io(source) => Error::Other(Box::new(DnsError::new(host, source))),
                other => other,
            })?;
        self.store(host, port, now, &addrs);
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().expect("test uri")
    }

    #[test]
    fn ports_and_literals() {
        assert_eq!(port_of(&uri("http://a/")), Some(80));
        assert_eq!(port_of(&uri("https://a/")), Some(443));
        assert_eq!(port_of(&uri("http://a:8080/")), Some(8080));
        assert_eq!(port_of(&uri("ftp://a/")), None);
        assert_eq!(ip_literal("127.0.0.1"), Some(IpAddr::from([127, 0, 0, 1])));
        assert!(ip_literal("[::1]").is_some_and(|ip| ip.is_loopback()));
        assert_eq!(ip_literal("localhost"), None);
    }

    #[test]
    fn literal_needs_no_lookup() {
        let r = CachingResolver::default();
        let addrs = r
            .resolve(
                &uri("http://127.0.0.1:18555/x"),
                &Config::default(),
                NextTimeout::default(),
            )
            .expect("literal resolves");
        assert_eq!(&addrs[..], &["127.0.0.1:18555".parse().expect("addr")]);
    }

    #[test]
    fn cache_hits_and_expires() {
        let r = CachingResolver::default();
        let now = Instant::now();
        let mut addrs = r.empty();
        addrs.push("10.0.0.1:80".parse().expect("addr"));
        r.store("example.test", 80, now, &addrs);
        assert!(r.cached("example.test", 80, now).is_some());
        assert!(r.cached("example.test", 81, now).is_none());
        assert!(r.cached("other.test", 80, now).is_none());
        assert!(r.cached("example.test", 80, now + CACHE_TTL).is_none());
        // The expired entry was dropped.
        assert!(r.cached("example.test", 80, now).is_none());
    }
}
