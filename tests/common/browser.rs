//! A browser-like client for gateways that sign in at the built-in
//! development issuer: a cookie jar, redirects followed by hand (every hop
//! kept), the issuer's login form filled in. `app.test`, `a.example.com`
//! and `other.test` resolve to the gateway. Used by the in-process tests and
//! the load bench's sign-in.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::header::HeaderMap;

/// A cookie-keeping client that follows redirects by hand and resolves
/// `app.test` and `*.example.com` to the gateway.
pub struct Browser {
    pub jar: Arc<reqwest::cookie::Jar>,
    pub http: reqwest::Client,
    gw: SocketAddr,
}

pub struct Hop {
    pub status: u16,
    pub url: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Browser {
    pub fn new(gw: SocketAddr) -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar.clone())
            .resolve("app.test", gw)
            .resolve("a.example.com", gw)
            .resolve("other.test", gw)
            .resolve("evil.com", SocketAddr::from(([127, 0, 0, 1], 9)))
            .build()
            .unwrap();
        Browser { jar, http, gw }
    }

    pub async fn get(&self, url: &str) -> Hop {
        let res = self
            .http
            .get(url)
            .header("Accept", "text/html, application/json;q=0.9")
            .send()
            .await
            .unwrap();
        Hop::from(url, res).await
    }

    /// Follows redirects until a non-redirect answer or a URL on another host
    /// than the gateway and the IdP; returns every hop.
    pub async fn follow(&self, url: &str) -> Vec<Hop> {
        let mut hops = Vec::new();
        let mut url = url.to_owned();
        for _ in 0..20 {
            let hop = self.get(&url).await;
            let next = hop.location();
            // Test servers speak plain http: an https hop is where the browser would leave.
            let stop = !(300..400).contains(&hop.status)
                || next.as_deref().is_some_and(|n| n.starts_with("https://"));
            hops.push(hop);
            match next {
                Some(n) if !stop => url = n,
                _ => break,
            }
        }
        hops
    }

    /// Full login as `user` starting at `url`; returns the hops after the IdP form.
    pub async fn login(&self, url: &str, user: &str) -> Vec<Hop> {
        let hops = self.follow(url).await;
        let form = hops.last().expect("a hop");
        assert_eq!(
            form.status, 200,
            "expected the IdP login form at {}",
            form.url
        );
        assert!(
            form.body.contains("password"),
            "not a login form: {}",
            form.body
        );
        self.submit_login(&form.url, user, "demo").await
    }

    /// Posts credentials to the development issuer's form at `form_url`.
    pub async fn submit_login(&self, form_url: &str, user: &str, password: &str) -> Vec<Hop> {
        let (action, query) = form_url.split_once('?').expect("authorize URL has a query");
        let body = format!("{query}&username={user}&password={password}");
        let res = self
            .http
            .post(action)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let hop = Hop::from(action, res).await;
        match hop.location() {
            Some(next) => {
                let mut v = vec![hop];
                v.extend(self.follow(&next).await);
                v
            }
            None => vec![hop],
        }
    }

    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let url: reqwest::Url = format!("http://{host}:{}/oauth2/x", self.gw.port())
            .parse()
            .unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
    }

    pub fn cookie_names(&self, host: &str) -> Vec<String> {
        use reqwest::cookie::CookieStore;
        let url: reqwest::Url = format!("http://{host}:{}/oauth2/x", self.gw.port())
            .parse()
            .unwrap();
        self.jar
            .cookies(&url)
            .map(|h| {
                h.to_str()
                    .unwrap_or("")
                    .split("; ")
                    .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Hop {
    async fn from(url: &str, res: reqwest::Response) -> Hop {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.text().await.unwrap_or_default();
        Hop {
            status,
            url: url.to_owned(),
            headers,
            body,
        }
    }

    pub fn location(&self) -> Option<String> {
        let loc = self.headers.get("location")?.to_str().ok()?;
        let base: reqwest::Url = self.url.parse().ok()?;
        base.join(loc).ok().map(|u| u.to_string())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The echo app's view of the request, when this hop is its answer.
    pub fn echoed(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not the echo app's JSON at {}: {}", self.url, self.body))
    }
}
