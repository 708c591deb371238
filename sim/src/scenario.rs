//! Scenario files (TOML, `version = 1`): types with documented defaults, `--set` overrides, and
//! validation that names the key path of every problem. Unknown keys are rejected.

use serde::Deserialize;

use qc_geo::{haversine_km, Point};

/// Upper bounds that keep a run's memory and time bounded.
pub const MAX_HUBS: usize = 200;
pub const MAX_SKUS: u32 = 100_000;
pub const MAX_EXPECTED_ORDERS: f64 = 5_000_000.0;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub version: u32,
    pub scenario: Meta,
    pub city: City,
    pub hubs: Vec<Hub>,
    #[serde(default)]
    pub catalog: Catalog,
    #[serde(default)]
    pub demand: Demand,
    #[serde(default)]
    pub picking: Picking,
    #[serde(default)]
    pub riders: Riders,
    #[serde(default)]
    pub traffic: Traffic,
    #[serde(default)]
    pub dispatch: Dispatch,
    #[serde(default)]
    pub slo: Slo,
    #[serde(default)]
    pub eta: Eta,
    #[serde(default)]
    pub gps: Gps,
    #[serde(default)]
    pub promo: Promo,
    #[serde(default)]
    pub checkout: CheckoutSection,
    #[serde(default)]
    pub search: SearchSection,
    #[serde(default)]
    pub flash_sale: FlashSaleSection,
}

/// A flash sale in the twin (issue #15): humans and bots compete for a few hundred units of one
/// product through the production flash-sale core (`qc_flashsale::app`: token mint, the
/// checkout pipeline, the waiting room, admission and the reaper on the twin's clock).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlashSaleSection {
    pub enabled: bool,
    /// When the sale opens, after the scenario's start.
    pub opens_after: Span,
    /// How long buyers keep trying after opening.
    pub lasts: Span,
    pub units: u32,
    pub per_user_limit: u32,
    pub reservation_ttl_s: u32,
    pub humans: u32,
    /// Humans arrive uniformly from `humans_early_s` before opening to `humans_late_s` after.
    pub humans_early_s: f64,
    pub humans_late_s: f64,
    /// Share of humans on accounts younger than a day.
    pub humans_new_accounts: f64,
    /// Share of humans who pay for what they reserved (the rest release it or let it expire).
    pub pay_share: f64,
    pub bots: u32,
    /// Requests per bot for each request a human makes (a human tries about every 5 s).
    pub bot_requests_per_human: f64,
    /// Bots start this long before opening.
    pub bots_early_s: f64,
}

impl Default for FlashSaleSection {
    fn default() -> Self {
        Self {
            enabled: false,
            opens_after: Span(600_000),
            lasts: Span(600_000),
            units: 300,
            per_user_limit: 1,
            reservation_ttl_s: 120,
            humans: 3000,
            humans_early_s: 60.0,
            humans_late_s: 240.0,
            humans_new_accounts: 0.1,
            pay_share: 0.9,
            bots: 40,
            bot_requests_per_human: 20.0,
            bots_early_s: 30.0,
        }
    }
}

/// Shoppers who search (issue #14): for every item of their basket they type a query about the
/// product they want, through the production search core (index over the twin's catalog, stock
/// from the twin's inventory store), and take it if the first page shows it in stock; otherwise
/// the first result in stock (a substitute), or nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSection {
    /// Share of shoppers who search (0: nobody; baskets are filled by browsing).
    pub share: f64,
    /// The query mix (weights, need not sum to 1): the product's Indonesian name, its English
    /// words, the name cut short as typed so far, the name with a one-letter typo.
    pub exact: f64,
    pub english: f64,
    pub prefix: f64,
    pub typo: f64,
    /// Share of exact and English queries that add the size as shoppers write it ("1l", "250ml").
    pub with_size: f64,
    /// Results on the first page, the ones a shopper looks through.
    pub page_size: u32,
}

impl Default for SearchSection {
    fn default() -> Self {
        Self {
            share: 0.0,
            exact: 0.4,
            english: 0.2,
            prefix: 0.2,
            typo: 0.2,
            with_size: 0.3,
            page_size: 20,
        }
    }
}

/// How shoppers meet Checkout (issue #13): every paying shopper's order runs the production
/// checkout (its key, the saga, the outbox); the share of declines is `demand.payment_failure_rate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckoutSection {
    /// false: a model without checkout (M/M/c): paying confirms the cart's hold through the
    /// inventory core and nothing else; declines and the fields below need it on.
    pub enabled: bool,
    /// Share of checkouts during which the payment gateway does not answer (every attempt
    /// times out: 503 `PAYMENT_UNAVAILABLE`).
    pub gateway_timeout_rate: f64,
    /// Share of shoppers answered 503 who retry with the same Idempotency-Key.
    pub retry_share: f64,
    /// Seconds before that retry.
    pub retry_after_s: f64,
    /// Share of checkouts sent twice with the same key (a double tap): the second is a replay.
    pub double_submit_rate: f64,
    /// The outbox relay's period (virtual seconds).
    pub relay_every_s: f64,
}

impl Default for CheckoutSection {
    fn default() -> Self {
        Self {
            enabled: true,
            gateway_timeout_rate: 0.0,
            retry_share: 0.5,
            retry_after_s: 5.0,
            double_submit_rate: 0.0,
            relay_every_s: 1.0,
        }
    }
}

/// Promotions in the twin (issue #12): shoppers use the rules' codes, every order through the
/// promo core's `apply` at checkout and `release` when it does not go through; fraud rings of
/// accounts sharing phones and addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Promo {
    pub enabled: bool,
    /// Share of honest shoppers' orders that try the promos.
    pub share: f64,
    /// Share of honest shoppers living two to an address (a household is no ring).
    pub household_share: f64,
    /// `PROMO_RING_MAX_ACCOUNTS` and `PROMO_RING_ACTION` (flag, block, review).
    pub ring_max_accounts: usize,
    pub ring_action: String,
    /// Rule bodies as the API takes them; empty = the built-in set (`sim::promo::default_rules`).
    pub rules: Vec<toml::Value>,
    pub rings: PromoRings,
}

impl Default for Promo {
    fn default() -> Self {
        Self {
            enabled: false,
            share: 0.3,
            household_share: 0.1,
            ring_max_accounts: 3,
            ring_action: "block".into(),
            rules: Vec::new(),
            rings: PromoRings::default(),
        }
    }
}

/// Fraud rings: `count` rings of `accounts` accounts sharing `devices` phones and `addresses`
/// addresses; `order_share` of all orders are theirs (always with a promo).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromoRings {
    pub count: u32,
    pub accounts: u32,
    pub devices: u32,
    pub addresses: u32,
    pub order_share: f64,
}

impl Default for PromoRings {
    fn default() -> Self {
        Self {
            count: 0,
            accounts: 6,
            devices: 2,
            addresses: 2,
            order_share: 0.05,
        }
    }
}

/// The riders' phones (09 in the twin): while a rider carries an order, a fix every
/// `interval_s` along the true path, with noise, outliers, dropouts and a device clock skew.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gps {
    pub enabled: bool,
    pub interval_s: f64,
    /// Gaussian noise per axis (north, east), metres; also the accuracy the phone reports.
    pub sigma_m: f64,
    /// Share of fixes that are outliers, displaced `outlier_m` in a random direction.
    pub outlier_rate: f64,
    pub outlier_m: f64,
    /// Share of fixes never sent.
    pub dropout_rate: f64,
    /// σ of each phone's constant clock offset, seconds.
    pub clock_skew_s: f64,
}

impl Default for Gps {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_s: 5.0,
            sigma_m: 10.0,
            outlier_rate: 0.02,
            outlier_m: 200.0,
            dropout_rate: 0.02,
            clock_skew_s: 1.0,
        }
    }
}

/// Which ETA model the twin runs (the regression gate degrades it on purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EtaModelKind {
    /// Learned traffic and calibrated quantiles.
    Full,
    /// Traffic filter ignored (multiplier 1).
    NoTraffic,
    /// Gaussian composition only.
    Uncalibrated,
    /// Every re-estimate replaces the shown ETA (no promise tolerance).
    AlwaysRevise,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Eta {
    pub model: EtaModelKind,
}

impl Default for Eta {
    fn default() -> Self {
        Self {
            model: EtaModelKind::Full,
        }
    }
}

impl EtaModelKind {
    pub fn model(self) -> qc_eta::Model {
        qc_eta::Model {
            traffic: self != EtaModelKind::NoTraffic,
            calibrate: self != EtaModelKind::Uncalibrated,
            keep_promise: self != EtaModelKind::AlwaysRevise,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            EtaModelKind::Full => "full",
            EtaModelKind::NoTraffic => "no_traffic",
            EtaModelKind::Uncalibrated => "uncalibrated",
            EtaModelKind::AlwaysRevise => "always_revise",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub name: String,
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Local time of day the run starts at, "HH:MM".
    #[serde(default = "d_start")]
    pub start: ClockTime,
    /// "3h", "90m", "45s", "1h30m".
    pub duration: Span,
    /// Orders placed before this are excluded from the metrics.
    #[serde(default)]
    pub warmup: Span,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct City {
    pub lat: f64,
    pub lng: f64,
    pub radius_km: f64,
    #[serde(default = "d_h3")]
    pub h3_resolution: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hub {
    pub id: String,
    pub lat: f64,
    pub lng: f64,
    #[serde(default = "d_hub_radius")]
    pub max_radius_km: f64,
    /// Pickers on duty every hour (default 4); `pickers_by_hour` replaces it.
    #[serde(default)]
    pub pickers: Option<u32>,
    /// Pickers on duty per local hour (24 values, index 0 = 00:00-01:00).
    #[serde(default)]
    pub pickers_by_hour: Option<Vec<u32>>,
    /// Multiplies the catalog's initial stock and restock levels at this hub.
    #[serde(default = "d_one")]
    pub stock_multiplier: f64,
    /// Riders based at this hub (default 8), split over `riders.shifts`; `riders_by_hour`
    /// replaces it.
    #[serde(default)]
    pub riders: Option<u32>,
    /// Riders on shift per local hour (24 values); rider k works the hours whose value is
    /// above k, so the profile's maximum is the hub's rider pool.
    #[serde(default)]
    pub riders_by_hour: Option<Vec<u32>>,
}

/// Virtual `[from, to)` of a run starting at `start_of_day_ms` (ms after midnight), cut at local
/// hour boundaries: `(local hour 0..24, start, end)` per piece.
pub fn hour_slots(
    start_of_day_ms: i64,
    from: i64,
    to: i64,
) -> impl Iterator<Item = (usize, i64, i64)> {
    const HOUR: i64 = 3_600_000;
    let mut t = from;
    std::iter::from_fn(move || {
        if t >= to {
            return None;
        }
        let day_ms = start_of_day_ms + t;
        let end = (t + HOUR - day_ms.rem_euclid(HOUR)).min(to);
        let slot = ((day_ms.rem_euclid(24 * HOUR) / HOUR) as usize, t, end);
        t = end;
        Some(slot)
    })
}

/// A hub's staffing of one kind: the same count all day, or one count per local hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staff<'a> {
    Flat(u32),
    Hourly(&'a [u32]),
}

impl Staff<'_> {
    /// On duty during local hour `hour` (0..24).
    pub fn at(&self, hour: usize) -> u32 {
        match self {
            Staff::Flat(n) => *n,
            Staff::Hourly(v) => v.get(hour % 24).copied().unwrap_or(0),
        }
    }

    /// Person-time on duty over virtual `[from, to)` of a run starting at `start_of_day_ms`, ms.
    pub fn person_ms(&self, start_of_day_ms: i64, from: i64, to: i64) -> i64 {
        hour_slots(start_of_day_ms, from, to)
            .map(|(hour, a, b)| i64::from(self.at(hour)) * (b - a))
            .sum()
    }

    /// The most on duty in any hour (the pool of people the hub needs).
    pub fn pool(&self) -> u32 {
        match self {
            Staff::Flat(n) => *n,
            Staff::Hourly(v) => v.iter().copied().max().unwrap_or(0),
        }
    }
}

impl Hub {
    pub fn pickers(&self) -> Staff<'_> {
        match &self.pickers_by_hour {
            Some(v) => Staff::Hourly(v),
            None => Staff::Flat(self.pickers.unwrap_or(DEFAULT_PICKERS)),
        }
    }

    pub fn riders(&self) -> Staff<'_> {
        match &self.riders_by_hour {
            Some(v) => Staff::Hourly(v),
            None => Staff::Flat(self.riders.unwrap_or(DEFAULT_RIDERS)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Catalog {
    pub skus: u32,
    /// Popularity of the k-th SKU ∝ 1 / k^s.
    pub zipf_exponent: f64,
    pub price_min: i64,
    pub price_max: i64,
    /// Average units per SKU per hub at the start (× the hub's stock_multiplier); each SKU's
    /// level is proportional to its popularity when `stock_by_popularity`, at least `min_stock`.
    pub initial_stock: i64,
    pub stock_by_popularity: bool,
    pub min_stock: i64,
    /// Restock check period ("0s" disables restocking).
    pub restock_every: Span,
    /// A SKU whose available stock falls below this fraction of its initial level is topped
    /// back up to that level.
    pub restock_below: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Demand {
    /// City-wide orders per hour before the hourly profile.
    pub orders_per_hour: f64,
    /// 24 multipliers, one per local hour (index 0 = 00:00-01:00).
    pub hourly_profile: Vec<f64>,
    /// Share of shoppers drawn uniformly over the city disc; the rest come from the hotspots.
    pub uniform_weight: f64,
    pub hotspots: Vec<Hotspot>,
    /// Mean basket size in distinct SKUs: 1 + Poisson(mean - 1), capped at `basket_max_items`.
    pub basket_mean_items: f64,
    pub basket_max_items: u32,
    /// Units per line: uniform in 1..=quantity_max.
    pub quantity_max: u32,
    /// Shoppers who never pay (their hold expires through the reaper).
    pub abandonment_rate: f64,
    /// Payments that fail (the hold is released at once).
    pub payment_failure_rate: f64,
    /// Mean time from hold to payment (exponential).
    pub checkout_delay_mean_s: f64,
    pub hold_ttl_s: u32,
    pub shoppers: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hotspot {
    pub lat: f64,
    pub lng: f64,
    /// Standard deviation of the distance from the centre.
    pub radius_km: f64,
    pub weight: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PickDistribution {
    Exponential,
    Lognormal,
    Fixed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Picking {
    /// Mean pick time = base_s + per_item_s × units.
    pub base_s: f64,
    pub per_item_s: f64,
    pub distribution: PickDistribution,
    /// Coefficient of variation (lognormal only).
    pub cv: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Slo {
    /// Share of orders lost to stockouts must stay at or below this.
    pub max_stockout_rate: f64,
    /// Share of paid orders that never reached the door (no picker or rider before the
    /// deadline) must stay at or below this.
    pub max_lost_rate: f64,
    /// 90th percentile wait for a picker, seconds.
    pub pick_wait_p90_s: f64,
    /// 90th percentile click-to-door, minutes.
    pub click_to_door_p90_min: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Riders {
    /// Mean riding speed (km/h) before traffic; each trip draws lognormally around it.
    pub speed_kmh: f64,
    pub speed_cv: f64,
    /// Road distance = road_factor × haversine distance.
    pub road_factor: f64,
    /// Probability a rider accepts an offer when answering in time.
    pub accept_probability: f64,
    /// Mean time to answer an offer (exponential); answers after the timeout are timeouts.
    pub answer_mean_s: f64,
    pub offer_timeout_s: f64,
    /// Time to collect an order at the hub, and to hand it over at the door.
    pub pickup_s: f64,
    pub handover_s: f64,
    /// Shifts; each hub's riders are split over them in proportion to `share`.
    pub shifts: Vec<Shift>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shift {
    /// "HH:MM" local; a shift whose end is before its start runs past midnight.
    pub start: ClockTime,
    pub end: ClockTime,
    pub share: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Traffic {
    /// 24 speed multipliers per local hour (< 1 is slower).
    pub hourly_speed: Vec<f64>,
    /// Coefficient of variation of a trip's travel time around its traffic-adjusted mean.
    pub noise_cv: f64,
    /// Disturbances on top of the hourly profile (rain, an accident, a closed road).
    pub events: Vec<TrafficEvent>,
}

/// From `start` (local "HH:MM", the first occurrence at or after the run's start) until `end`
/// (or the end of the run), trips whose midpoint lies in the area (the whole city without one)
/// ride at `speed_factor` times their speed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficEvent {
    #[serde(default)]
    pub name: String,
    pub start: ClockTime,
    pub end: Option<ClockTime>,
    pub speed_factor: f64,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub radius_km: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dispatch {
    /// False: orders end at the handover (a picking-only model such as M/M/c): no riders,
    /// no dispatch, no ETA.
    pub enabled: bool,
    /// A batch flushes when the pool holds `min_orders`, or `window_s` after it was armed.
    pub window_s: f64,
    pub min_orders: u32,
    pub max_batch: u32,
    pub matcher: qc_dispatch::Matcher,
    /// An order's delivery deadline after payment: an order still waiting for a picker or a
    /// rider then is lost (`DEADLINE_PASSED`); no retry limit fails it before.
    pub deadline_min: f64,
}

impl Default for Riders {
    fn default() -> Self {
        Self {
            speed_kmh: 22.0,
            speed_cv: 0.15,
            road_factor: 1.35,
            accept_probability: 0.92,
            answer_mean_s: 8.0,
            offer_timeout_s: 30.0,
            pickup_s: 60.0,
            handover_s: 90.0,
            shifts: vec![Shift {
                start: ClockTime(0),
                end: ClockTime(0),
                share: 1.0,
            }],
        }
    }
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            hourly_speed: vec![1.0; 24],
            noise_cv: 0.2,
            events: Vec::new(),
        }
    }
}

impl Default for Dispatch {
    fn default() -> Self {
        Self {
            enabled: true,
            window_s: 5.0,
            min_orders: 3,
            max_batch: 50,
            matcher: qc_dispatch::Matcher::Optimal,
            deadline_min: 60.0,
        }
    }
}

fn d_seed() -> u64 {
    1
}
fn d_start() -> ClockTime {
    ClockTime(11 * 3_600_000)
}
fn d_h3() -> u8 {
    9
}
fn d_hub_radius() -> f64 {
    3.0
}
pub const DEFAULT_PICKERS: u32 = 4;
pub const DEFAULT_RIDERS: u32 = 8;
fn d_one() -> f64 {
    1.0
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            skus: 200,
            zipf_exponent: 1.0,
            price_min: 5_000,
            price_max: 150_000,
            initial_stock: 50,
            stock_by_popularity: true,
            min_stock: 2,
            restock_every: Span(30 * 60_000),
            restock_below: 0.3,
        }
    }
}

impl Default for Demand {
    fn default() -> Self {
        Self {
            orders_per_hour: 300.0,
            hourly_profile: vec![1.0; 24],
            uniform_weight: 1.0,
            hotspots: Vec::new(),
            basket_mean_items: 4.0,
            basket_max_items: 20,
            quantity_max: 3,
            abandonment_rate: 0.05,
            payment_failure_rate: 0.02,
            checkout_delay_mean_s: 60.0,
            hold_ttl_s: 900,
            shoppers: 100_000,
        }
    }
}

impl Default for Picking {
    fn default() -> Self {
        Self {
            base_s: 60.0,
            per_item_s: 12.0,
            distribution: PickDistribution::Lognormal,
            cv: 0.35,
        }
    }
}

impl Default for Slo {
    fn default() -> Self {
        Self {
            max_stockout_rate: 0.02,
            max_lost_rate: 0.01,
            pick_wait_p90_s: 300.0,
            click_to_door_p90_min: 15.0,
        }
    }
}

/// One problem in a scenario: where (a key path such as `hubs[1].lat`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Everything wrong with a scenario, one problem per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ScenarioError(pub Vec<Problem>);

fn problem(path: impl Into<String>, message: impl Into<String>) -> ScenarioError {
    ScenarioError(vec![Problem {
        path: path.into(),
        message: message.into(),
    }])
}

/// A length of time written "3h", "90m", "45s", "1h30m" or "250ms", parsed once at load (a bad
/// one is an error naming its key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Span(i64);

impl Span {
    pub fn ms(self) -> i64 {
        self.0
    }
}

impl TryFrom<String> for Span {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        parse_duration_ms(&s).map(Span)
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (h, rest) = (self.0 / 3_600_000, self.0 % 3_600_000);
        let (m, rest) = (rest / 60_000, rest % 60_000);
        let (sec, ms) = (rest / 1000, rest % 1000);
        let mut out = String::new();
        for (n, unit) in [(h, "h"), (m, "m"), (sec, "s"), (ms, "ms")] {
            if n != 0 {
                out += &format!("{n}{unit}");
            }
        }
        f.write_str(if out.is_empty() { "0s" } else { &out })
    }
}

/// A local time of day written "HH:MM", parsed once at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ClockTime(i64);

impl ClockTime {
    /// Milliseconds after midnight.
    pub fn ms(self) -> i64 {
        self.0
    }
}

impl TryFrom<String> for ClockTime {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        parse_clock_ms(&s).map(ClockTime)
    }
}

impl std::fmt::Display for ClockTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let min = self.0 / 60_000;
        write!(f, "{:02}:{:02}", min / 60, min % 60)
    }
}

/// Parses "3h", "90m", "45s", "1h30m", "250ms" into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit_ms = match c {
            'h' => 3_600_000,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            'm' => 60_000,
            's' => 1_000,
            _ => {
                return Err(format!(
                    "{s:?}: expected a number followed by h, m, s or ms"
                ))
            }
        };
        let n: i64 = digits
            .parse()
            .map_err(|_| format!("{s:?}: a unit needs a number before it"))?;
        total = total
            .checked_add(n.checked_mul(unit_ms).ok_or("duration too long")?)
            .ok_or("duration too long")?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "{s:?}: the number {digits} needs a unit (h, m, s, ms)"
        ));
    }
    Ok(total)
}

/// Parses "HH:MM" into ms after midnight.
pub fn parse_clock_ms(s: &str) -> Result<i64, String> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected HH:MM"))?;
    let h: i64 = h.parse().map_err(|_| format!("{s:?}: expected HH:MM"))?;
    let m: i64 = m.parse().map_err(|_| format!("{s:?}: expected HH:MM"))?;
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return Err(format!("{s:?}: not a time of day"));
    }
    Ok((h * 60 + m) * 60_000)
}

/// Applies `key.path=value` overrides (`demand.orders_per_hour=500`, `hubs[0].pickers=6`,
/// `hubs[*].riders=12` for every hub);
/// values are read as TOML, else taken as strings.
fn apply_override(doc: &mut toml::Value, assignment: &str) -> Result<(), ScenarioError> {
    let (path, raw) = assignment
        .split_once('=')
        .ok_or_else(|| problem(assignment, "--set needs key=value"))?;
    let path = path.trim();
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {}", raw.trim()))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let parts: Vec<&str> = path.split('.').collect();
    set_path(doc, &parts, &value, path)
}

/// Sets `parts` (`name`, `name[i]`, or `name[*]` for every element) under `node` to `value`.
fn set_path(
    node: &mut toml::Value,
    parts: &[&str],
    value: &toml::Value,
    path: &str,
) -> Result<(), ScenarioError> {
    let Some((part, rest)) = parts.split_first() else {
        *node = value.clone();
        return Ok(());
    };
    let (name, index) = match part.split_once('[') {
        Some((n, idx)) => (n, Some(idx.trim_end_matches(']'))),
        None => (*part, None),
    };
    let table = node
        .as_table_mut()
        .ok_or_else(|| problem(path, format!("{name} is not inside a table")))?;
    let Some(index) = index else {
        if rest.is_empty() {
            table.insert(name.to_string(), value.clone());
            return Ok(());
        }
        let child = table
            .entry(name.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        return set_path(child, rest, value, path);
    };
    let items = table
        .get_mut(name)
        .and_then(|c| c.as_array_mut())
        .ok_or_else(|| problem(path, format!("{name} is not a list")))?;
    if index == "*" {
        for item in items.iter_mut() {
            set_path(item, rest, value, path)?;
        }
        return Ok(());
    }
    let idx: usize = index
        .parse()
        .map_err(|_| problem(path, "bad index (a number or *)"))?;
    let item = items
        .get_mut(idx)
        .ok_or_else(|| problem(path, format!("{name}[{idx}] does not exist")))?;
    set_path(item, rest, value, path)
}

impl Scenario {
    /// Parses and validates; every problem is reported with its key path.
    pub fn parse(text: &str, overrides: &[String]) -> Result<Self, ScenarioError> {
        Self::from_document(Self::document(text, overrides)?)
    }

    /// The scenario file as a TOML document with `overrides` applied, before validation (what
    /// `sim plan` edits and writes back).
    pub fn document(text: &str, overrides: &[String]) -> Result<toml::Value, ScenarioError> {
        let mut doc: toml::Value = toml::from_str::<toml::Table>(text)
            .map(toml::Value::Table)
            .map_err(|e| problem("(file)", e.message().to_string() + &line_of(text, e.span())))?;
        for o in overrides {
            apply_override(&mut doc, o)?;
        }
        Ok(doc)
    }

    /// Deserialises and validates a document from [`Scenario::document`].
    pub fn from_document(doc: toml::Value) -> Result<Self, ScenarioError> {
        let scenario: Scenario = serde_path_to_error::deserialize(doc).map_err(|e| {
            let path = e.path().to_string();
            problem(
                if path == "." {
                    "(top level)".to_string()
                } else {
                    path
                },
                e.inner().to_string(),
            )
        })?;
        scenario.validate()?;
        Ok(scenario)
    }

    pub fn load(path: &std::path::Path, overrides: &[String]) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| problem(path.display().to_string(), format!("cannot read: {e}")))?;
        Self::parse(&text, overrides)
    }

    pub fn duration_ms(&self) -> i64 {
        self.scenario.duration.ms()
    }
    pub fn warmup_ms(&self) -> i64 {
        self.scenario.warmup.ms()
    }
    pub fn start_of_day_ms(&self) -> i64 {
        self.scenario.start.ms()
    }
    /// The local hour (0..24) at virtual time 0.
    pub fn start_hour(&self) -> usize {
        (self.start_of_day_ms() / 3_600_000) as usize % 24
    }
    pub fn restock_every_ms(&self) -> i64 {
        self.catalog.restock_every.ms()
    }

    /// Semantic checks: ranges, consistency, bounds.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let mut p: Vec<Problem> = Vec::new();
        let mut err = |path: &str, msg: String| {
            p.push(Problem {
                path: path.into(),
                message: msg,
            })
        };
        if self.version != 1 {
            err("version", format!("must be 1, got {}", self.version));
        }
        if self.scenario.name.is_empty()
            || !self
                .scenario
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            err("scenario.name", "must be non-empty [A-Za-z0-9_.-]".into());
        }
        let duration = self.duration_ms();
        if duration <= 0 {
            err("scenario.duration", "must be positive".into());
        } else if duration > 7 * 24 * 3_600_000 {
            err("scenario.duration", "at most 7 days".into());
        }
        if self.warmup_ms() >= duration {
            err(
                "scenario.warmup",
                "must be shorter than the duration".into(),
            );
        }
        let c = &self.city;
        if !(-90.0..=90.0).contains(&c.lat) {
            err(
                "city.lat",
                format!("must be within [-90, 90], got {}", c.lat),
            );
        }
        if !(-180.0..=180.0).contains(&c.lng) {
            err(
                "city.lng",
                format!("must be within [-180, 180], got {}", c.lng),
            );
        }
        if !(c.radius_km > 0.0 && c.radius_km <= 200.0) {
            err(
                "city.radius_km",
                format!("must be within (0, 200], got {}", c.radius_km),
            );
        }
        if !(0..=15).contains(&c.h3_resolution) {
            err("city.h3_resolution", "must be within [0, 15]".into());
        }
        if self.hubs.is_empty() {
            err("hubs", "at least one hub is required".into());
        }
        if self.hubs.len() > MAX_HUBS {
            err("hubs", format!("at most {MAX_HUBS} hubs"));
        }
        let center = Point {
            lat: c.lat,
            lng: c.lng,
        };
        let demand_positive = self.demand.orders_per_hour > 0.0;
        let mut seen = std::collections::BTreeSet::new();
        for (i, h) in self.hubs.iter().enumerate() {
            let at = |k: &str| format!("hubs[{i}].{k}");
            if qc_kit::validate_id("id", &h.id).is_err() {
                err(
                    &at("id"),
                    "must be 1-64 characters of [A-Za-z0-9_.-]".into(),
                );
            } else if !seen.insert(h.id.clone()) {
                err(&at("id"), format!("duplicate hub id {:?}", h.id));
            }
            if !(-90.0..=90.0).contains(&h.lat) || !(-180.0..=180.0).contains(&h.lng) {
                err(&at("lat"), "coordinates out of range".into());
            } else {
                let d = haversine_km(
                    center,
                    Point {
                        lat: h.lat,
                        lng: h.lng,
                    },
                );
                if d > c.radius_km {
                    err(
                        &at("lat"),
                        format!(
                            "hub is {d:.2} km from the city centre, outside city.radius_km = {}",
                            c.radius_km
                        ),
                    );
                }
            }
            if !(h.max_radius_km > 0.0 && h.max_radius_km <= 50.0) {
                err(
                    &at("max_radius_km"),
                    format!("must be within (0, 50], got {}", h.max_radius_km),
                );
            }
            let staff = [
                (
                    "pickers",
                    h.pickers.is_some(),
                    h.pickers_by_hour.as_deref(),
                    h.pickers(),
                    1000,
                    "picked",
                ),
                (
                    "riders",
                    h.riders.is_some(),
                    h.riders_by_hour.as_deref(),
                    h.riders(),
                    5000,
                    "delivered",
                ),
            ];
            for (name, flat_set, hourly, staff, cap, verb) in staff {
                if name == "riders" && !self.dispatch.enabled {
                    continue;
                }
                let by_hour = format!("{name}_by_hour");
                if flat_set && hourly.is_some() {
                    err(&at(&by_hour), format!("set {name} or {by_hour}, not both"));
                    continue;
                }
                let key = if hourly.is_some() {
                    at(&by_hour)
                } else {
                    at(name)
                };
                if hourly.is_some_and(|v| v.len() != 24) {
                    err(
                        &key,
                        format!(
                            "24 values (one per local hour), got {}",
                            hourly.map_or(0, <[u32]>::len)
                        ),
                    );
                } else if staff.pool() > cap {
                    err(&key, format!("at most {cap}"));
                } else if staff.pool() == 0 && demand_positive {
                    err(
                        &key,
                        format!("zero {name} with demand: orders would never be {verb}"),
                    );
                }
            }
            if !(h.stock_multiplier >= 0.0 && h.stock_multiplier <= 1000.0) {
                err(&at("stock_multiplier"), "must be within [0, 1000]".into());
            }
        }
        let k = &self.catalog;
        if !(1..=MAX_SKUS).contains(&k.skus) {
            err(
                "catalog.skus",
                format!("must be within [1, {MAX_SKUS}], got {}", k.skus),
            );
        }
        if !(k.zipf_exponent >= 0.0 && k.zipf_exponent <= 5.0) {
            err("catalog.zipf_exponent", "must be within [0, 5]".into());
        }
        if k.price_min < 0 || k.price_max < k.price_min {
            err(
                "catalog.price_min",
                "need 0 <= price_min <= price_max".into(),
            );
        }
        if !(0..=1_000_000).contains(&k.initial_stock) {
            err(
                "catalog.initial_stock",
                "must be within [0, 1000000]".into(),
            );
        }
        let every = k.restock_every.ms();
        if every != 0 && every < 60_000 {
            err(
                "catalog.restock_every",
                "at least 1m, or 0s to disable".into(),
            );
        }
        if !(0.0..=1.0).contains(&k.restock_below) {
            err(
                "catalog.restock_below",
                format!("must be a fraction within [0, 1], got {}", k.restock_below),
            );
        }
        if !(0..=k.initial_stock.max(0)).contains(&k.min_stock) {
            err(
                "catalog.min_stock",
                "must be within [0, initial_stock]".into(),
            );
        }
        let d = &self.demand;
        if !(d.orders_per_hour >= 0.0 && d.orders_per_hour <= 1_000_000.0) {
            err(
                "demand.orders_per_hour",
                format!("must be within [0, 1000000], got {}", d.orders_per_hour),
            );
        }
        if d.hourly_profile.len() != 24 {
            err(
                "demand.hourly_profile",
                format!("needs 24 values, got {}", d.hourly_profile.len()),
            );
        }
        for (i, m) in d.hourly_profile.iter().enumerate() {
            if !(*m >= 0.0 && *m <= 100.0) {
                err(
                    &format!("demand.hourly_profile[{i}]"),
                    format!("must be within [0, 100], got {m}"),
                );
            }
        }
        if !(0.0..=1.0).contains(&d.uniform_weight) {
            err("demand.uniform_weight", "must be within [0, 1]".into());
        }
        if d.uniform_weight < 1.0 && d.hotspots.is_empty() {
            err(
                "demand.hotspots",
                "uniform_weight < 1 needs at least one hotspot".into(),
            );
        }
        for (i, h) in d.hotspots.iter().enumerate() {
            if !positive(h.radius_km) || !positive(h.weight) {
                err(
                    &format!("demand.hotspots[{i}]"),
                    "radius_km and weight must be positive".into(),
                );
            }
            if !(-90.0..=90.0).contains(&h.lat) || !(-180.0..=180.0).contains(&h.lng) {
                err(
                    &format!("demand.hotspots[{i}].lat"),
                    "coordinates out of range".into(),
                );
            }
        }
        if !(d.basket_mean_items >= 1.0 && d.basket_mean_items <= 50.0) {
            err("demand.basket_mean_items", "must be within [1, 50]".into());
        }
        if !(1..=50).contains(&d.basket_max_items) {
            err("demand.basket_max_items", "must be within [1, 50]".into());
        }
        if !(1..=50).contains(&d.quantity_max) {
            err("demand.quantity_max", "must be within [1, 50]".into());
        }
        for (key, v) in [
            ("demand.abandonment_rate", d.abandonment_rate),
            ("demand.payment_failure_rate", d.payment_failure_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                err(key, format!("must be within [0, 1], got {v}"));
            }
        }
        if !(d.checkout_delay_mean_s >= 0.0 && d.checkout_delay_mean_s <= 3600.0) {
            err(
                "demand.checkout_delay_mean_s",
                "must be within [0, 3600]".into(),
            );
        }
        if !(1..=3600).contains(&d.hold_ttl_s) {
            err("demand.hold_ttl_s", "must be within [1, 3600]".into());
        }
        if d.shoppers == 0 {
            err("demand.shoppers", "must be positive".into());
        }
        let peak = d.hourly_profile.iter().copied().fold(0.0, f64::max);
        let expected = d.orders_per_hour * peak * duration as f64 / 3_600_000.0;
        if expected > MAX_EXPECTED_ORDERS {
            err(
                "demand.orders_per_hour",
                format!("would place up to {expected:.0} orders; at most {MAX_EXPECTED_ORDERS}"),
            );
        }
        let pk = &self.picking;
        if !(pk.base_s > 0.0 && pk.base_s <= 7200.0) {
            err("picking.base_s", "must be within (0, 7200]".into());
        }
        if !(pk.per_item_s >= 0.0 && pk.per_item_s <= 600.0) {
            err("picking.per_item_s", "must be within [0, 600]".into());
        }
        if !(pk.cv > 0.0 && pk.cv <= 5.0) {
            err("picking.cv", "must be within (0, 5]".into());
        }
        let rd = &self.riders;
        for (key, v, lo, hi) in [
            ("riders.speed_kmh", rd.speed_kmh, 1.0, 120.0),
            ("riders.speed_cv", rd.speed_cv, 0.0, 2.0),
            ("riders.road_factor", rd.road_factor, 1.0, 3.0),
            ("riders.accept_probability", rd.accept_probability, 0.0, 1.0),
            ("riders.answer_mean_s", rd.answer_mean_s, 0.0, 600.0),
            ("riders.offer_timeout_s", rd.offer_timeout_s, 1.0, 600.0),
            ("riders.pickup_s", rd.pickup_s, 0.0, 3600.0),
            ("riders.handover_s", rd.handover_s, 0.0, 3600.0),
            ("traffic.noise_cv", self.traffic.noise_cv, 0.0, 2.0),
            ("dispatch.window_s", self.dispatch.window_s, 0.1, 600.0),
        ] {
            if !(v >= lo && v <= hi) {
                err(key, format!("must be within [{lo}, {hi}], got {v}"));
            }
        }
        if rd.shifts.is_empty() {
            err("riders.shifts", "at least one shift".into());
        }
        for (i, sh) in rd.shifts.iter().enumerate() {
            if !positive(sh.share) {
                err(
                    &format!("riders.shifts[{i}].share"),
                    "must be positive".into(),
                );
            }
        }
        if self.traffic.hourly_speed.len() != 24 {
            err(
                "traffic.hourly_speed",
                format!("needs 24 values, got {}", self.traffic.hourly_speed.len()),
            );
        }
        for (i, m) in self.traffic.hourly_speed.iter().enumerate() {
            if !(*m >= 0.05 && *m <= 5.0) {
                err(
                    &format!("traffic.hourly_speed[{i}]"),
                    format!("must be within [0.05, 5], got {m}"),
                );
            }
        }
        for (i, ev) in self.traffic.events.iter().enumerate() {
            let at = |k: &str| format!("traffic.events[{i}].{k}");
            if !(ev.speed_factor >= 0.05 && ev.speed_factor <= 5.0) {
                err(
                    &at("speed_factor"),
                    format!("must be within [0.05, 5], got {}", ev.speed_factor),
                );
            }
            match (ev.lat, ev.lng, ev.radius_km) {
                (None, None, None) => {}
                (Some(lat), Some(lng), Some(r)) => {
                    if Point::new(lat, lng).is_err() {
                        err(&at("lat"), "lat/lng must be a valid location".into());
                    }
                    if !(positive(r) && r <= 100.0) {
                        err(&at("radius_km"), "must be within (0, 100]".into());
                    }
                }
                _ => err(
                    &at("lat"),
                    "an area needs lat, lng and radius_km together".into(),
                ),
            }
        }
        if !(self.dispatch.deadline_min >= 5.0 && self.dispatch.deadline_min <= 1440.0) {
            err("dispatch.deadline_min", "must be within [5, 1440]".into());
        }
        if !(1..=50).contains(&self.dispatch.min_orders) {
            err("dispatch.min_orders", "must be within [1, 50]".into());
        }
        if !(1..=200).contains(&self.dispatch.max_batch) {
            err("dispatch.max_batch", "must be within [1, 200]".into());
        }
        if !positive(self.slo.click_to_door_p90_min) {
            err("slo.click_to_door_p90_min", "must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.slo.max_stockout_rate) {
            err("slo.max_stockout_rate", "must be within [0, 1]".into());
        }
        let g = &self.gps;
        if !(g.interval_s >= 2.0 && g.interval_s <= 3600.0) {
            err(
                "gps.interval_s",
                "must be within [2, 3600] (Tracking throttles faster fixes)".into(),
            );
        }
        for (key, v, hi) in [
            ("gps.sigma_m", g.sigma_m, 500.0),
            ("gps.outlier_m", g.outlier_m, 100_000.0),
            ("gps.clock_skew_s", g.clock_skew_s, 3.0),
            ("gps.outlier_rate", g.outlier_rate, 1.0),
            ("gps.dropout_rate", g.dropout_rate, 1.0),
        ] {
            if !(v >= 0.0 && v <= hi) {
                err(key, format!("must be within [0, {hi}]"));
            }
        }
        let co = &self.checkout;
        for (key, v) in [
            ("checkout.gateway_timeout_rate", co.gateway_timeout_rate),
            ("checkout.retry_share", co.retry_share),
            ("checkout.double_submit_rate", co.double_submit_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                err(key, "must be within [0, 1]".into());
            }
        }
        if !(co.retry_after_s.is_finite() && co.retry_after_s >= 0.0) {
            err("checkout.retry_after_s", "must be non-negative".into());
        }
        if !co.enabled && self.demand.payment_failure_rate > 0.0 {
            err(
                "demand.payment_failure_rate",
                "declines happen in checkout: needs checkout.enabled = true".into(),
            );
        }
        if !(co.relay_every_s.is_finite() && co.relay_every_s > 0.0) {
            err("checkout.relay_every_s", "must be positive".into());
        }
        let fs = &self.flash_sale;
        if fs.enabled {
            for (key, v) in [
                ("flash_sale.humans_new_accounts", fs.humans_new_accounts),
                ("flash_sale.pay_share", fs.pay_share),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    err(key, "must be within [0, 1]".into());
                }
            }
            if fs.units == 0 || fs.humans == 0 {
                err("flash_sale.units", "a sale needs units and humans".into());
            }
            if !(30..=3600).contains(&fs.reservation_ttl_s) {
                err(
                    "flash_sale.reservation_ttl_s",
                    "must be within 30..3600 (03)".into(),
                );
            }
            for (key, v) in [
                ("flash_sale.humans_early_s", fs.humans_early_s),
                ("flash_sale.humans_late_s", fs.humans_late_s),
                ("flash_sale.bots_early_s", fs.bots_early_s),
            ] {
                if !(v.is_finite() && (0.0..=3600.0).contains(&v)) {
                    err(key, "seconds within 0..3600".into());
                }
            }
            if !(fs.bot_requests_per_human.is_finite()
                && (1.0..=200.0).contains(&fs.bot_requests_per_human))
            {
                err(
                    "flash_sale.bot_requests_per_human",
                    "must be within 1..200".into(),
                );
            }
            if fs.lasts.ms() <= 0 {
                err("flash_sale.lasts", "must be positive".into());
            }
        }
        let se = &self.search;
        for (key, v) in [
            ("search.share", se.share),
            ("search.with_size", se.with_size),
        ] {
            if !(0.0..=1.0).contains(&v) {
                err(key, "must be within [0, 1]".into());
            }
        }
        let mix = [se.exact, se.english, se.prefix, se.typo];
        if mix.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || mix.iter().sum::<f64>() <= 0.0 {
            err(
                "search.exact",
                "the query mix (exact, english, prefix, typo) needs non-negative weights, not all 0"
                    .into(),
            );
        }
        if !(1..=100).contains(&se.page_size) {
            err("search.page_size", "must be within [1, 100]".into());
        }
        let pr = &self.promo;
        for (key, v) in [
            ("promo.share", pr.share),
            ("promo.household_share", pr.household_share),
            ("promo.rings.order_share", pr.rings.order_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                err(key, "must be within [0, 1]".into());
            }
        }
        if qc_promo::RingAction::parse(&pr.ring_action).is_none() {
            err("promo.ring_action", "must be flag, block or review".into());
        }
        if pr.rings.count > 0
            && (pr.rings.accounts == 0 || pr.rings.devices == 0 || pr.rings.addresses == 0)
        {
            err(
                "promo.rings",
                "accounts, devices and addresses must be at least 1".into(),
            );
        }
        for (i, r) in pr.rules.iter().enumerate() {
            let json = serde_json::to_value(r).unwrap_or(serde_json::Value::Null);
            if let Err(e) = qc_promo::RuleBody::parse(&json) {
                err(&format!("promo.rules[{i}]"), e.to_string());
            }
        }
        if !(0.0..=1.0).contains(&self.slo.max_lost_rate) {
            err("slo.max_lost_rate", "must be within [0, 1]".into());
        }
        if !non_negative(self.slo.pick_wait_p90_s) {
            err("slo.pick_wait_p90_s", "must be non-negative".into());
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ScenarioError(p))
        }
    }
}

/// False for NaN too (TOML can spell `nan`), which is why checks are written as `!positive(x)`.
fn positive(x: f64) -> bool {
    x > 0.0
}

fn non_negative(x: f64) -> bool {
    x >= 0.0
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|s| {
        format!(
            " (line {})",
            text[..s.start.min(text.len())].lines().count().max(1)
        )
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const MINIMAL: &str = r#"
version = 1
[scenario]
name = "t"
duration = "1h"
[city]
lat = -6.2
lng = 106.8
radius_km = 10
[[hubs]]
id = "h1"
lat = -6.2
lng = 106.8
"#;

    #[test]
    fn a_minimal_scenario_takes_the_defaults() {
        let s = Scenario::parse(MINIMAL, &[]).unwrap();
        assert_eq!(s.duration_ms(), 3_600_000);
        assert_eq!(s.hubs[0].pickers(), Staff::Flat(4));
        assert_eq!(s.demand.hourly_profile.len(), 24);
        assert_eq!(s.start_of_day_ms(), 11 * 3_600_000);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("45s"), Ok(45_000));
        assert!(parse_duration_ms("10").is_err());
        assert!(parse_duration_ms("h").is_err());
        assert!(parse_duration_ms("3d").is_err());
    }

    fn errors(text: &str, sets: &[&str]) -> String {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Scenario::parse(text, &sets).unwrap_err().to_string()
    }

    #[test]
    fn staffing_by_hour_replaces_the_flat_count() {
        let mut hours = vec![0u32; 24];
        hours[11] = 6;
        hours[12] = 9;
        let profile = format!("{hours:?}");
        let s = Scenario::parse(MINIMAL, &[format!("hubs[0].riders_by_hour={profile}")]).unwrap();
        let riders = s.hubs[0].riders();
        assert_eq!((riders.at(11), riders.at(12), riders.at(13)), (6, 9, 0));
        assert_eq!(riders.pool(), 9);
        assert_eq!(s.hubs[0].pickers(), Staff::Flat(4));

        let e = errors(
            MINIMAL,
            &[
                "hubs[0].riders=5",
                &format!("hubs[0].riders_by_hour={profile}"),
            ],
        );
        assert!(
            e.contains("hubs[0].riders_by_hour: set riders or riders_by_hour, not both"),
            "{e}"
        );
        let e = errors(MINIMAL, &["hubs[0].pickers_by_hour=[1, 2]"]);
        assert!(
            e.contains("hubs[0].pickers_by_hour: 24 values (one per local hour), got 2"),
            "{e}"
        );
        let e = errors(
            MINIMAL,
            &[&format!("hubs[0].pickers_by_hour={:?}", [0u32; 24])],
        );
        assert!(
            e.contains("hubs[0].pickers_by_hour: zero pickers with demand"),
            "{e}"
        );
        let e = errors(
            MINIMAL,
            &[&format!("hubs[0].riders_by_hour={:?}", [6000u32; 24])],
        );
        assert!(e.contains("hubs[0].riders_by_hour: at most 5000"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let e = errors(
            &format!("{MINIMAL}\n[demand]\norders_per_hour = 5\nhourly_profil = []\n"),
            &[],
        );
        assert!(e.contains("demand") && e.contains("hourly_profil"), "{e}");
        let e = errors(
            &MINIMAL.replace("lat = -6.2\nlng = 106.8\n\"#", ""),
            &["hubs[0].colour=\"red\""],
        );
        assert!(e.contains("hubs[0]") && e.contains("colour"), "{e}");
    }

    #[test]
    fn inconsistent_values_are_named_with_their_path() {
        let e = errors(MINIMAL, &["demand.orders_per_hour=-5"]);
        assert!(e.contains("demand.orders_per_hour: must be within"), "{e}");
        let e = errors(MINIMAL, &["hubs[0].lat=-7.5"]);
        assert!(
            e.contains("hubs[0].lat: hub is") && e.contains("outside city.radius_km"),
            "{e}"
        );
        let e = errors(MINIMAL, &["hubs[0].pickers=0"]);
        assert!(
            e.contains("hubs[0].pickers: zero pickers with demand"),
            "{e}"
        );
        let e = errors(MINIMAL, &["scenario.duration=\"3 days\""]);
        assert!(e.contains("scenario.duration"), "{e}");
        let e = errors(MINIMAL, &["demand.abandonment_rate=1.5", "catalog.skus=0"]);
        assert!(
            e.contains("demand.abandonment_rate") && e.contains("catalog.skus"),
            "{e}"
        );
    }

    #[test]
    fn malformed_toml_reports_a_line() {
        let e = errors("version = 1\n[scenario\nname = 1", &[]);
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn overrides_apply_before_validation() {
        let s = Scenario::parse(
            MINIMAL,
            &["hubs[0].pickers=7".into(), "scenario.seed=99".into()],
        )
        .unwrap();
        assert_eq!((s.hubs[0].pickers, s.scenario.seed), (Some(7), 99));
    }

    #[test]
    fn a_star_index_sets_every_element() {
        let two_hubs = Scenario::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/lunch-peak.toml"),
            &["hubs[*].riders=9".into()],
        )
        .unwrap();
        assert!(two_hubs.hubs.len() > 1);
        assert!(two_hubs.hubs.iter().all(|h| h.riders == Some(9)));
        let e = errors(MINIMAL, &["hubs[*].colour=1"]);
        assert!(e.contains("colour"), "{e}");
        let e = errors(MINIMAL, &["hubs[x].riders=1"]);
        assert!(e.contains("bad index"), "{e}");
    }
}
