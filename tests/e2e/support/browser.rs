//! A scripted browser: reqwest with a cookie jar, no automatic redirects
//! (followed here, at most 20 hops, each one recorded), `app.example.com`,
//! `auth.example.com` and friends resolved to 127.0.0.1, `Accept: text/html`,
//! and the IdP's login form filled in when it shows up.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT};
use url::Url;

use super::echo::Seen;
use super::idp::password;

/// Most requests one navigation makes.
pub const MAX_HOPS: usize = 20;

/// Host names that resolve to 127.0.0.1 (the port comes from the URL).
pub const TEST_HOSTS: [&str; 4] = [
    "app.example.com",
    "auth.example.com",
    "other.example.com",
    "example.com",
];

/// A browser with its own cookie jar.
pub struct Browser {
    client: reqwest::Client,
    jar: Arc<Jar>,
}

/// One response, with the navigation that led to it.
#[derive(Debug)]
pub struct Page {
    /// Status of the last response.
    pub status: u16,
    /// URL of the last request.
    pub url: Url,
    /// Headers of the last response.
    pub headers: HeaderMap,
    /// Body of the last response.
    pub body: String,
    /// Every request of the navigation as `STATUS METHOD URL`.
    pub hops: Vec<String>,
    /// Where the last response pointed when the navigation stopped before
    /// following it (a host outside the test hosts, or `stop_before`).
    pub next: Option<String>,
}

impl Page {
    /// A header's first value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a header.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }

    /// The `Location` header.
    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }

    /// What the echo app saw, when the answer came from it.
    pub fn seen(&self) -> Option<Seen> {
        Seen::parse(&self.body)
    }

    /// Like [`Page::seen`], panicking with the navigation when the app did not answer.
    pub fn expect_app(&self) -> Seen {
        self.seen()
            .unwrap_or_else(|| panic!("expected the app's answer, got:\n{self}"))
    }
}

impl std::fmt::Display for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} {}", self.status, self.url)?;
        for h in &self.hops {
            writeln!(f, "  hop: {h}")?;
        }
        if let Some(n) = &self.next {
            writeln!(f, "  next (not followed): {n}")?;
        }
        for (k, v) in &self.headers {
            writeln!(f, "  {k}: {}", v.to_str().unwrap_or("<binary>"))?;
        }
        let body: String = self.body.chars().take(1500).collect();
        write!(f, "  body: {body}")
    }
}

/// Options of one navigation.
#[derive(Default)]
pub struct Nav<'a> {
    /// Log in as this user when the IdP's login form appears.
    pub login: Option<&'a str>,
    /// Stop (without requesting it) at the first URL for which this is true.
    pub stop_before: Option<&'a dyn Fn(&Url) -> bool>,
}

impl Browser {
    /// A browser (`Accept: text/html`).
    pub fn new() -> Browser {
        Browser::with_accept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
    }

    /// An API client (`Accept: application/json`), same cookie handling.
    pub fn api() -> Browser {
        Browser::with_accept("application/json")
    }

    fn with_accept(accept: &'static str) -> Browser {
        let jar = Arc::new(Jar::default());
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(accept));
        let mut b = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .no_proxy()
            // A new connection per request, so a load balancer in front of
            // several gateways decides per request.
            .pool_max_idle_per_host(0)
            .timeout(std::time::Duration::from_secs(20));
        for host in TEST_HOSTS {
            b = b.resolve(host, SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        Browser {
            client: b.build().expect("build reqwest client"),
            jar,
        }
    }

    /// One `GET`, no redirect followed.
    pub async fn get(&self, url: &str) -> Page {
        self.get_with(url, &[]).await
    }

    /// One `GET` with extra headers, no redirect followed.
    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Page {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("bad URL {url:?}: {e}"));
        let mut req = self.client.get(url.clone());
        for (k, v) in headers {
            req = req.header(HeaderName::from_bytes(k.as_bytes()).unwrap(), *v);
        }
        let mut hops = Vec::new();
        self.send(req, url, "GET", &mut hops).await
    }

    /// Follows redirects from `url` without logging in.
    pub async fn open(&self, url: &str) -> Page {
        self.navigate(url, Nav::default()).await
    }

    /// Follows redirects from `url`, logging in as `user` at the IdP.
    pub async fn open_as(&self, url: &str, user: &str) -> Page {
        self.navigate(
            url,
            Nav {
                login: Some(user),
                ..Nav::default()
            },
        )
        .await
    }

    /// Follows redirects (at most [`MAX_HOPS`] requests), filling in the
    /// IdP's login form once when `nav.login` is set.
    pub async fn navigate(&self, url: &str, nav: Nav<'_>) -> Page {
        let mut url = Url::parse(url).unwrap_or_else(|e| panic!("bad URL {url:?}: {e}"));
        let mut hops = Vec::new();
        let mut logged_in = false;
        let mut form: Option<Vec<(String, String)>> = None;
        loop {
            assert!(
                hops.len() < MAX_HOPS,
                "more than {MAX_HOPS} requests in one navigation:\n{}",
                hops.join("\n")
            );
            let (req, method) = match form.take() {
                Some(fields) => (self.client.post(url.clone()).form(&fields), "POST"),
                None => (self.client.get(url.clone()), "GET"),
            };
            let mut page = self.send(req, url.clone(), method, &mut hops).await;
            if (300..400).contains(&page.status) {
                let Some(loc) = page.location() else {
                    return page;
                };
                let next = match page.url.join(loc) {
                    Ok(n) => n,
                    Err(_) => {
                        page.next = Some(loc.to_owned());
                        return page;
                    }
                };
                if !is_test_url(&next) || nav.stop_before.is_some_and(|f| f(&next)) {
                    page.next = Some(next.to_string());
                    return page;
                }
                url = next;
                continue;
            }
            if let (Some(user), false, Some(action)) =
                (nav.login, logged_in, login_form_action(&page.body))
            {
                logged_in = true;
                url = page.url.join(&action).expect("login form action");
                form = Some(vec![
                    ("login".into(), user.into()),
                    ("password".into(), password(user)),
                ]);
                continue;
            }
            return page;
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: Url,
        method: &str,
        hops: &mut Vec<String>,
    ) -> Page {
        let res = match req.send().await {
            Ok(r) => r,
            Err(e) => panic!("{method} {url} failed: {e:?}\nafter:\n{}", hops.join("\n")),
        };
        let status = res.status().as_u16();
        hops.push(format!("{status} {method} {url}"));
        let headers = res.headers().clone();
        let body = res.text().await.unwrap_or_default();
        Page {
            status,
            url,
            headers,
            body,
            hops: hops.clone(),
            next: None,
        }
    }

    /// The cookies this browser would send to `url`, as `(name, value)`.
    pub fn cookies(&self, url: &str) -> Vec<(String, String)> {
        let url = Url::parse(url).unwrap();
        let Some(v) = self.jar.cookies(&url) else {
            return Vec::new();
        };
        v.to_str()
            .unwrap_or("")
            .split(';')
            .filter_map(|c| c.trim().split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// One cookie's value as it would be sent to `url`.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.cookies(url)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Puts a cookie into the jar as if `url` had set it.
    pub fn set_cookie(&self, url: &str, cookie: &str) {
        self.jar.add_cookie_str(cookie, &Url::parse(url).unwrap());
    }
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

/// URLs the browser may visit: plain http on 127.0.0.1 or the test hosts.
fn is_test_url(u: &Url) -> bool {
    u.scheme() == "http"
        && matches!(u.host_str(), Some(h) if h == "127.0.0.1" || TEST_HOSTS.contains(&h))
}

/// The `action` of the IdP's login form (tests/idp/README.md), if this page is one.
pub fn login_form_action(body: &str) -> Option<String> {
    if !(body.contains("name=\"login\"") && body.contains("name=\"password\"")) {
        return None;
    }
    let start =
        body.find("<form method=\"post\" action=\"")? + "<form method=\"post\" action=\"".len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].replace("&amp;", "&"))
}
