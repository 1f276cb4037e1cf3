//! The embedded gazetteer: real places the demo geocoder knows, and the
//! matching rule that maps a free-text address to one of them.
//!
//! The table is a plain `const` array so the binary needs no data files and
//! every answer is deterministic: tests can compare coordinates exactly.

use std::sync::LazyLock;

/// One place the demo geocoder can answer with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    /// The city name matched against addresses (see [`find`] for the rule).
    pub city: &'static str,
    /// Other names that also match (e.g. "NYC", "Bombay"); spellings that
    /// differ only by case or accents need no alias, [`find`] folds those.
    pub aliases: &'static [&'static str],
    /// The country's common English name.
    pub country: &'static str,
    /// The `formatted_address` returned, in Google's style.
    pub formatted: &'static str,
    /// Latitude in degrees, WGS 84.
    pub lat: f64,
    /// Longitude in degrees, WGS 84.
    pub lng: f64,
}

impl Place {
    /// A stable `place_id` for this place: `demo-` and an ASCII slug of the
    /// city name (e.g. `demo-sao-paulo`), readable in test failures.
    pub fn place_id(&self) -> String {
        let mut id = String::from("demo-");
        let mut last_dash = true;
        for c in fold(self.city).chars() {
            if c.is_ascii_alphanumeric() {
                id.push(c);
                last_dash = false;
            } else if !last_dash {
                id.push('-');
                last_dash = true;
            }
        }
        if id.ends_with('-') {
            id.pop();
        }
        id
    }

    /// Every name this place answers to: the city name first, then aliases.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.city).chain(self.aliases.iter().copied())
    }
}

/// Shorthand so the table stays one line per place.
const fn p(
    city: &'static str,
    aliases: &'static [&'static str],
    country: &'static str,
    formatted: &'static str,
    lat: f64,
    lng: f64,
) -> Place {
    Place {
        city,
        aliases,
        country,
        formatted,
        lat,
        lng,
    }
}

/// Country names reused many times in the table.
const US: &str = "United States";
/// See [`US`].
const CA: &str = "Canada";

/// The gazetteer. Order matters only for ties between equally long names.
// One line per place reads (and diffs) better than rustfmt's layout.
#[rustfmt::skip]
pub const PLACES: &[Place] = &[
    // North America
    p("New York", &["NYC", "New York City"], US, "New York, NY, USA", 40.7128, -74.0060),
    p("Los Angeles", &[], US, "Los Angeles, CA, USA", 34.0522, -118.2437),
    p("Chicago", &[], US, "Chicago, IL, USA", 41.8781, -87.6298),
    p("Houston", &[], US, "Houston, TX, USA", 29.7604, -95.3698),
    p("Phoenix", &[], US, "Phoenix, AZ, USA", 33.4484, -112.0740),
    p("Philadelphia", &[], US, "Philadelphia, PA, USA", 39.9526, -75.1652),
    p("San Francisco", &["SF"], US, "San Francisco, CA, USA", 37.7749, -122.4194),
    p("Seattle", &[], US, "Seattle, WA, USA", 47.6062, -122.3321),
    p("Boston", &[], US, "Boston, MA, USA", 42.3601, -71.0589),
    p("Miami", &[], US, "Miami, FL, USA", 25.7617, -80.1918),
    p("Washington", &["Washington DC", "Washington, D.C."], US, "Washington, DC, USA", 38.9072, -77.0369),
    p("Denver", &[], US, "Denver, CO, USA", 39.7392, -104.9903),
    p("Atlanta", &[], US, "Atlanta, GA, USA", 33.7490, -84.3880),
    p("Las Vegas", &[], US, "Las Vegas, NV, USA", 36.1699, -115.1398),
    p("New Orleans", &[], US, "New Orleans, LA, USA", 29.9511, -90.0715),
    p("Honolulu", &[], US, "Honolulu, HI, USA", 21.3069, -157.8583),
    p("Anchorage", &[], US, "Anchorage, AK, USA", 61.2181, -149.9003),
    p("Toronto", &[], CA, "Toronto, ON, Canada", 43.6532, -79.3832),
    p("Montreal", &[], CA, "Montreal, QC, Canada", 45.5017, -73.5673),
    p("Vancouver", &[], CA, "Vancouver, BC, Canada", 49.2827, -123.1207),
    p("Ottawa", &[], CA, "Ottawa, ON, Canada", 45.4215, -75.6972),
    p("Mexico City", &["Ciudad de México", "CDMX"], "Mexico", "Mexico City, CDMX, Mexico", 19.4326, -99.1332),
    p("Guadalajara", &[], "Mexico", "Guadalajara, Jal., Mexico", 20.6597, -103.3496),
    p("Havana", &["La Habana"], "Cuba", "Havana, Cuba", 23.1136, -82.3666),
    p("Guatemala City", &["Ciudad de Guatemala"], "Guatemala", "Guatemala City, Guatemala", 14.6349, -90.5069),
    p("Panama City", &["Ciudad de Panamá"], "Panama", "Panama City, Panama", 8.9824, -79.5199),
    p("San Juan", &[], "Puerto Rico", "San Juan, Puerto Rico", 18.4655, -66.1057),
    // South America
    p("São Paulo", &[], "Brazil", "São Paulo, State of São Paulo, Brazil", -23.5505, -46.6333),
    p("Rio de Janeiro", &[], "Brazil", "Rio de Janeiro, State of Rio de Janeiro, Brazil", -22.9068, -43.1729),
    p("Brasília", &[], "Brazil", "Brasília, Federal District, Brazil", -15.7975, -47.8919),
    p("Buenos Aires", &[], "Argentina", "Buenos Aires, Argentina", -34.6037, -58.3816),
    p("Santiago", &["Santiago de Chile"], "Chile", "Santiago, Santiago Metropolitan Region, Chile", -33.4489, -70.6693),
    p("Lima", &[], "Peru", "Lima, Peru", -12.0464, -77.0428),
    p("Cusco", &["Cuzco"], "Peru", "Cusco, Peru", -13.5319, -71.9675),
    p("Bogotá", &[], "Colombia", "Bogotá, Bogota, Colombia", 4.7110, -74.0721),
    p("Medellín", &[], "Colombia", "Medellín, Medellin, Antioquia, Colombia", 6.2442, -75.5812),
    p("Caracas", &[], "Venezuela", "Caracas, Capital District, Venezuela", 10.4806, -66.9036),
    p("Quito", &[], "Ecuador", "Quito, Ecuador", -0.1807, -78.4678),
    p("Montevideo", &[], "Uruguay", "Montevideo, Montevideo Department, Uruguay", -34.9011, -56.1645),
    p("La Paz", &[], "Bolivia", "La Paz, Bolivia", -16.4897, -68.1193),
    p("Asunción", &[], "Paraguay", "Asunción, Paraguay", -25.2637, -57.5759),
    // Europe
    p("London", &[], "United Kingdom", "London, UK", 51.5074, -0.1278),
    p("Manchester", &[], "United Kingdom", "Manchester, UK", 53.4808, -2.2426),
    p("Edinburgh", &[], "United Kingdom", "Edinburgh, UK", 55.9533, -3.1883),
    p("Dublin", &[], "Ireland", "Dublin, Ireland", 53.3498, -6.2603),
    p("Paris", &[], "France", "Paris, France", 48.8566, 2.3522),
    p("Lyon", &[], "France", "Lyon, France", 45.7640, 4.8357),
    p("Marseille", &["Marseilles"], "France", "Marseille, France", 43.2965, 5.3698),
    p("Berlin", &[], "Germany", "Berlin, Germany", 52.5200, 13.4050),
    p("Hamburg", &[], "Germany", "Hamburg, Germany", 53.5511, 9.9937),
    p("Munich", &["München", "Muenchen"], "Germany", "Munich, Germany", 48.1351, 11.5820),
    p("Frankfurt", &["Frankfurt am Main"], "Germany", "Frankfurt, Germany", 50.1109, 8.6821),
    p("Cologne", &["Köln", "Koeln"], "Germany", "Cologne, Germany", 50.9375, 6.9603),
    p("Madrid", &[], "Spain", "Madrid, Spain", 40.4168, -3.7038),
    p("Barcelona", &[], "Spain", "Barcelona, Spain", 41.3874, 2.1686),
    p("Valencia", &[], "Spain", "Valencia, Spain", 39.4699, -0.3763),
    p("Seville", &["Sevilla"], "Spain", "Seville, Spain", 37.3891, -5.9845),
    p("Lisbon", &["Lisboa"], "Portugal", "Lisbon, Portugal", 38.7223, -9.1393),
    p("Porto", &["Oporto"], "Portugal", "Porto, Portugal", 41.1579, -8.6291),
    p("Rome", &["Roma"], "Italy", "Rome, Metropolitan City of Rome Capital, Italy", 41.9028, 12.4964),
    p("Milan", &["Milano"], "Italy", "Milan, Metropolitan City of Milan, Italy", 45.4642, 9.1900),
    p("Naples", &["Napoli"], "Italy", "Naples, Metropolitan City of Naples, Italy", 40.8518, 14.2681),
    p("Venice", &["Venezia"], "Italy", "Venice, Metropolitan City of Venice, Italy", 45.4408, 12.3155),
    p("Florence", &["Firenze"], "Italy", "Florence, Metropolitan City of Florence, Italy", 43.7696, 11.2558),
    p("Amsterdam", &[], "Netherlands", "Amsterdam, Netherlands", 52.3676, 4.9041),
    p("Rotterdam", &[], "Netherlands", "Rotterdam, Netherlands", 51.9244, 4.4777),
    p("Brussels", &["Bruxelles", "Brussel"], "Belgium", "Brussels, Belgium", 50.8503, 4.3517),
    p("Zürich", &["Zuerich"], "Switzerland", "Zürich, Switzerland", 47.3769, 8.5417),
    p("Geneva", &["Genève", "Genf"], "Switzerland", "Geneva, Switzerland", 46.2044, 6.1432),
    p("Vienna", &["Wien"], "Austria", "Vienna, Austria", 48.2082, 16.3738),
    p("Prague", &["Praha"], "Czechia", "Prague, Czechia", 50.0755, 14.4378),
    p("Warsaw", &["Warszawa"], "Poland", "Warsaw, Poland", 52.2297, 21.0122),
    p("Kraków", &["Cracow"], "Poland", "Kraków, Poland", 50.0647, 19.9450),
    p("Budapest", &[], "Hungary", "Budapest, Hungary", 47.4979, 19.0402),
    p("Copenhagen", &["København"], "Denmark", "Copenhagen, Denmark", 55.6761, 12.5683),
    p("Stockholm", &[], "Sweden", "Stockholm, Sweden", 59.3293, 18.0686),
    p("Oslo", &[], "Norway", "Oslo, Norway", 59.9139, 10.7522),
    p("Helsinki", &[], "Finland", "Helsinki, Finland", 60.1699, 24.9384),
    p("Reykjavík", &[], "Iceland", "Reykjavík, Iceland", 64.1466, -21.9426),
    p("Tallinn", &[], "Estonia", "Tallinn, Estonia", 59.4370, 24.7536),
    p("Riga", &[], "Latvia", "Riga, Latvia", 56.9496, 24.1052),
    p("Vilnius", &[], "Lithuania", "Vilnius, Lithuania", 54.6872, 25.2797),
    p("Athens", &["Athina"], "Greece", "Athens, Greece", 37.9838, 23.7275),
    p("Istanbul", &[], "Türkiye", "Istanbul, Türkiye", 41.0082, 28.9784),
    p("Bucharest", &["București"], "Romania", "Bucharest, Romania", 44.4268, 26.1025),
    p("Sofia", &[], "Bulgaria", "Sofia, Bulgaria", 42.6977, 23.3219),
    p("Belgrade", &["Beograd"], "Serbia", "Belgrade, Serbia", 44.7866, 20.4489),
    p("Zagreb", &[], "Croatia", "Zagreb, Croatia", 45.8150, 15.9819),
    p("Kyiv", &["Kiev"], "Ukraine", "Kyiv, Ukraine", 50.4501, 30.5234),
    p("Moscow", &["Moskva"], "Russia", "Moscow, Russia", 55.7558, 37.6173),
    p("Saint Petersburg", &["St Petersburg", "St. Petersburg"], "Russia", "Saint Petersburg, Russia", 59.9311, 30.3609),
    // Africa
    p("Cairo", &[], "Egypt", "Cairo, Cairo Governorate, Egypt", 30.0444, 31.2357),
    p("Casablanca", &[], "Morocco", "Casablanca, Morocco", 33.5731, -7.5898),
    p("Marrakesh", &["Marrakech"], "Morocco", "Marrakesh, Morocco", 31.6295, -7.9811),
    p("Tunis", &[], "Tunisia", "Tunis, Tunisia", 36.8065, 10.1815),
    p("Algiers", &["Alger"], "Algeria", "Algiers, Algeria", 36.7538, 3.0588),
    p("Lagos", &[], "Nigeria", "Lagos, Nigeria", 6.5244, 3.3792),
    p("Abuja", &[], "Nigeria", "Abuja, Federal Capital Territory, Nigeria", 9.0765, 7.3986),
    p("Accra", &[], "Ghana", "Accra, Ghana", 5.6037, -0.1870),
    p("Dakar", &[], "Senegal", "Dakar, Senegal", 14.7167, -17.4677),
    p("Nairobi", &[], "Kenya", "Nairobi, Kenya", -1.2921, 36.8219),
    p("Addis Ababa", &[], "Ethiopia", "Addis Ababa, Ethiopia", 9.0192, 38.7525),
    p("Kampala", &[], "Uganda", "Kampala, Uganda", 0.3476, 32.5825),
    p("Kigali", &[], "Rwanda", "Kigali, Rwanda", -1.9441, 30.0619),
    p("Dar es Salaam", &[], "Tanzania", "Dar es Salaam, Tanzania", -6.7924, 39.2083),
    p("Khartoum", &[], "Sudan", "Khartoum, Sudan", 15.5007, 32.5599),
    p("Kinshasa", &[], "DR Congo", "Kinshasa, Democratic Republic of the Congo", -4.4419, 15.2663),
    p("Luanda", &[], "Angola", "Luanda, Angola", -8.8390, 13.2894),
    p("Johannesburg", &["Joburg"], "South Africa", "Johannesburg, South Africa", -26.2041, 28.0473),
    p("Cape Town", &[], "South Africa", "Cape Town, South Africa", -33.9249, 18.4241),
    // Asia
    p("Tokyo", &[], "Japan", "Tokyo, Japan", 35.6762, 139.6503),
    p("Osaka", &[], "Japan", "Osaka, Japan", 34.6937, 135.5023),
    p("Kyoto", &[], "Japan", "Kyoto, Japan", 35.0116, 135.7681),
    p("Seoul", &[], "South Korea", "Seoul, South Korea", 37.5665, 126.9780),
    p("Busan", &[], "South Korea", "Busan, South Korea", 35.1796, 129.0756),
    p("Beijing", &["Peking"], "China", "Beijing, China", 39.9042, 116.4074),
    p("Shanghai", &[], "China", "Shanghai, China", 31.2304, 121.4737),
    p("Guangzhou", &["Canton"], "China", "Guangzhou, Guangdong Province, China", 23.1291, 113.2644),
    p("Shenzhen", &[], "China", "Shenzhen, Guangdong Province, China", 22.5431, 114.0579),
    p("Hong Kong", &[], "Hong Kong", "Hong Kong", 22.3193, 114.1694),
    p("Taipei", &[], "Taiwan", "Taipei City, Taiwan", 25.0330, 121.5654),
    p("Ulaanbaatar", &["Ulan Bator"], "Mongolia", "Ulaanbaatar, Mongolia", 47.8864, 106.9057),
    p("Singapore", &[], "Singapore", "Singapore", 1.3521, 103.8198),
    p("Bangkok", &[], "Thailand", "Bangkok, Thailand", 13.7563, 100.5018),
    p("Hanoi", &["Ha Noi"], "Vietnam", "Hanoi, Vietnam", 21.0278, 105.8342),
    p("Ho Chi Minh City", &["Saigon"], "Vietnam", "Ho Chi Minh City, Vietnam", 10.8231, 106.6297),
    p("Phnom Penh", &[], "Cambodia", "Phnom Penh, Cambodia", 11.5564, 104.9282),
    p("Yangon", &["Rangoon"], "Myanmar", "Yangon, Myanmar (Burma)", 16.8409, 96.1735),
    p("Kuala Lumpur", &["KL"], "Malaysia", "Kuala Lumpur, Federal Territory of Kuala Lumpur, Malaysia", 3.1390, 101.6869),
    p("Jakarta", &[], "Indonesia", "Jakarta, Indonesia", -6.2088, 106.8456),
    p("Manila", &[], "Philippines", "Manila, Metro Manila, Philippines", 14.5995, 120.9842),
    p("Mumbai", &["Bombay"], "India", "Mumbai, Maharashtra, India", 19.0760, 72.8777),
    p("New Delhi", &["Delhi"], "India", "New Delhi, Delhi, India", 28.6139, 77.2090),
    p("Bengaluru", &["Bangalore"], "India", "Bengaluru, Karnataka, India", 12.9716, 77.5946),
    p("Kolkata", &["Calcutta"], "India", "Kolkata, West Bengal, India", 22.5726, 88.3639),
    p("Chennai", &["Madras"], "India", "Chennai, Tamil Nadu, India", 13.0827, 80.2707),
    p("Karachi", &[], "Pakistan", "Karachi, Karachi City, Sindh, Pakistan", 24.8607, 67.0011),
    p("Lahore", &[], "Pakistan", "Lahore, Punjab, Pakistan", 31.5204, 74.3587),
    p("Dhaka", &["Dacca"], "Bangladesh", "Dhaka, Bangladesh", 23.8103, 90.4125),
    p("Kathmandu", &[], "Nepal", "Kathmandu, Nepal", 27.7172, 85.3240),
    p("Colombo", &[], "Sri Lanka", "Colombo, Sri Lanka", 6.9271, 79.8612),
    p("Tashkent", &[], "Uzbekistan", "Tashkent, Uzbekistan", 41.2995, 69.2401),
    p("Almaty", &[], "Kazakhstan", "Almaty, Kazakhstan", 43.2220, 76.8512),
    p("Tehran", &[], "Iran", "Tehran, Tehran Province, Iran", 35.6892, 51.3890),
    p("Baghdad", &[], "Iraq", "Baghdad, Baghdad Governorate, Iraq", 33.3152, 44.3661),
    p("Riyadh", &[], "Saudi Arabia", "Riyadh, Saudi Arabia", 24.7136, 46.6753),
    p("Dubai", &[], "United Arab Emirates", "Dubai, United Arab Emirates", 25.2048, 55.2708),
    p("Abu Dhabi", &[], "United Arab Emirates", "Abu Dhabi, United Arab Emirates", 24.4539, 54.3773),
    p("Doha", &[], "Qatar", "Doha, Qatar", 25.2854, 51.5310),
    p("Jerusalem", &[], "Israel", "Jerusalem, Israel", 31.7683, 35.2137),
    p("Tel Aviv", &["Tel Aviv-Yafo"], "Israel", "Tel Aviv-Yafo, Israel", 32.0853, 34.7818),
    p("Amman", &[], "Jordan", "Amman, Jordan", 31.9454, 35.9284),
    p("Beirut", &[], "Lebanon", "Beirut, Lebanon", 33.8938, 35.5018),
    // Oceania
    p("Sydney", &[], "Australia", "Sydney NSW, Australia", -33.8688, 151.2093),
    p("Melbourne", &[], "Australia", "Melbourne VIC, Australia", -37.8136, 144.9631),
    p("Brisbane", &[], "Australia", "Brisbane QLD, Australia", -27.4698, 153.0251),
    p("Perth", &[], "Australia", "Perth WA, Australia", -31.9505, 115.8605),
    p("Adelaide", &[], "Australia", "Adelaide SA, Australia", -34.9285, 138.6007),
    p("Auckland", &[], "New Zealand", "Auckland, New Zealand", -36.8485, 174.7633),
    p("Wellington", &[], "New Zealand", "Wellington, New Zealand", -41.2865, 174.7762),
    p("Christchurch", &[], "New Zealand", "Christchurch, New Zealand", -43.5321, 172.6362),
    p("Suva", &[], "Fiji", "Suva, Fiji", -18.1416, 178.4419),
    p("Port Moresby", &[], "Papua New Guinea", "Port Moresby, Papua New Guinea", -9.4438, 147.1803),
];

/// Finds the place an address refers to.
///
/// Rule: case- and accent-insensitive ("sao paulo" finds São Paulo); a name
/// matches only as whole words (so "Rome" does not match "Romeo St"); among
/// matches the longest name wins (so "New Delhi" beats its alias "Delhi"),
/// and ties go to the earlier place in [`PLACES`].
pub fn find(address: &str) -> Option<&'static Place> {
    let haystack = fold(address);
    NAME_INDEX
        .iter()
        .find(|(needle, _)| contains_word(&haystack, needle))
        .map(|&(_, place)| place)
}

/// Every folded name with its place, longest first and in table order among
/// equals, so the first hit is the answer. Built once: folding all names on
/// every request was most of a geocode call's cost in debug builds, which
/// is what the project's tests run.
static NAME_INDEX: LazyLock<Vec<(String, &'static Place)>> = LazyLock::new(|| {
    let mut index: Vec<(String, &'static Place)> = PLACES
        .iter()
        .flat_map(|place| place.names().map(move |name| (fold(name), place)))
        .filter(|(name, _)| !name.is_empty())
        .collect();
    // Stable sort: ties keep table order.
    index.sort_by_key(|(name, _)| std::cmp::Reverse(name.chars().count()));
    index
});

/// Lower-cases `s` and strips the accents common in the table's names, so
/// that people typing plain ASCII still get a match. Not a full Unicode
/// normalisation: the table is small and known.
fn fold(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            // Combining marks, e.g. the dot that "İ" leaves after lower-casing.
            '\u{300}'..='\u{36f}' => None,
            'á' | 'à' | 'â' | 'ã' | 'ä' | 'å' | 'ă' => Some('a'),
            'é' | 'è' | 'ê' | 'ë' => Some('e'),
            'í' | 'ì' | 'î' | 'ï' | 'ı' => Some('i'),
            'ó' | 'ò' | 'ô' | 'õ' | 'ö' | 'ø' => Some('o'),
            'ú' | 'ù' | 'û' | 'ü' => Some('u'),
            'ç' => Some('c'),
            'ñ' => Some('n'),
            'ł' => Some('l'),
            'ș' | 'ş' => Some('s'),
            'ț' | 'ţ' => Some('t'),
            other => Some(other),
        })
        .collect()
}

/// Whether `needle` occurs in `haystack` with no letter or digit directly
/// before or after it. Both must already be folded.
fn contains_word(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(start, _)| {
        let before = haystack[..start].chars().next_back();
        let after = haystack[start + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn table_is_big_unique_and_in_range() {
        assert!(PLACES.len() >= 100, "only {} places", PLACES.len());
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for place in PLACES {
            for name in place.names() {
                assert!(!name.trim().is_empty(), "empty name in {place:?}");
                // Folded, because two names equal after folding could
                // never both be reached.
                assert!(names.insert(fold(name)), "duplicate name {name:?}");
            }
            let id = place.place_id();
            assert!(id.is_ascii() && id.len() > "demo-".len(), "{id}");
            assert!(ids.insert(id), "duplicate id for {place:?}");
            assert!((-90.0..=90.0).contains(&place.lat), "{place:?}");
            assert!((-180.0..=180.0).contains(&place.lng), "{place:?}");
            assert!(!place.country.is_empty() && !place.formatted.is_empty());
        }
    }

    #[test]
    fn matching_is_case_insensitive_and_prefers_longest() {
        let ny = find("350 5th ave, new york, ny 10118").map(|p| p.formatted);
        assert_eq!(ny, Some("New York, NY, USA"));
        let bcn = find("Carrer de Mallorca 401, BARCELONA").map(|p| p.formatted);
        assert_eq!(bcn, Some("Barcelona, Spain"));
        // "Delhi" is an alias of New Delhi; the longer name wins either way.
        assert_eq!(find("new delhi").map(|p| p.city), Some("New Delhi"));
        assert_eq!(find("Sao Paulo, Brazil").map(|p| p.city), Some("São Paulo"));
        assert_eq!(find("ZÜRICH").map(|p| p.city), Some("Zürich"));
        assert_eq!(find("zurich").map(|p| p.city), Some("Zürich"));
        assert_eq!(find("İstanbul").map(|p| p.city), Some("Istanbul"));
        assert_eq!(find("Bogota DC").map(|p| p.city), Some("Bogotá"));
    }

    #[test]
    fn matching_needs_whole_words() {
        assert_eq!(find("12 Romeo Street"), None);
        assert_eq!(find("Climate lab"), None);
        assert_eq!(find("nowhere at all"), None);
        assert_eq!(find(""), None);
        assert_eq!(find("Via del Corso, Rome").map(|p| p.city), Some("Rome"));
    }

    #[test]
    fn place_ids_are_slugs() {
        assert_eq!(PLACES[0].place_id(), "demo-new-york");
        let sp = find("são paulo").map(Place::place_id);
        assert_eq!(sp.as_deref(), Some("demo-sao-paulo"));
    }
}
