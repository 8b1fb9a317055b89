//! Word lists behind the procedural prompt generator. Kept apart from the templates so the
//! logic in `prompts.rs` stays readable.

pub(crate) const ACTIVITIES: &[&str] = &[
    "learn to play guitar",
    "get better sleep",
    "train for a 10k",
    "save for a house deposit",
    "start composting at home",
    "clean a cast iron pan",
    "fix a squeaky door",
    "learn Spanish faster",
    "stop procrastinating",
    "make sourdough bread",
    "repot a monstera",
    "negotiate a raise",
    "plan a kid's birthday party",
    "get rid of fruit flies",
    "remove a red wine stain",
    "improve my credit score",
    "prepare for a job interview",
    "meal prep for the week",
    "keep basil alive indoors",
    "write a wedding toast",
    "potty train a puppy",
    "fall asleep faster",
    "organise a small closet",
    "get back into running after an injury",
    "read more books",
];

pub(crate) const CONCEPTS: &[&str] = &[
    "inflation",
    "how vaccines work",
    "black holes",
    "compound interest",
    "the stock market",
    "photosynthesis",
    "blockchain",
    "the electoral college",
    "jet lag",
    "how noise-cancelling headphones work",
    "why the sky is blue",
    "index funds",
    "how a mortgage works",
    "quantum computing",
    "how airplanes stay in the air",
    "carbon offsets",
    "sleep cycles",
    "the offside rule in football",
    "how tides work",
    "what a recession is",
    "how credit cards make money",
    "how GPS works",
    "why we dream",
];

pub(crate) const DOCS: &[&str] = &[
    "a birthday message for my sister",
    "a complaint email to my landlord about the heating",
    "a cover letter for a barista job",
    "a thank-you note to my kid's teacher",
    "an out-of-office reply",
    "a short bio for my Instagram",
    "a polite reminder to a friend who owes me money",
    "a toast for my parents' anniversary",
    "a LinkedIn post about my new job",
    "a resignation letter",
    "a eulogy for my grandfather",
    "a message to cancel my gym membership",
];

pub(crate) const PLACES: &[&str] = &[
    "Lisbon",
    "Kyoto",
    "Mexico City",
    "Edinburgh",
    "Vancouver",
    "Cape Town",
    "Hanoi",
    "Istanbul",
    "Buenos Aires",
    "Seoul",
    "Marrakech",
    "Reykjavik",
    "Porto",
    "Chicago",
    "Bali",
];

pub(crate) const INGREDIENTS: &[&str] = &[
    "chickpeas",
    "leftover rice",
    "spinach and feta",
    "ground turkey",
    "sweet potatoes",
    "tofu",
    "salmon",
    "a can of coconut milk",
    "zucchini",
    "eggs and cheese",
    "lentils",
    "half a cabbage",
];

pub(crate) const PAIRS: &[(&str, &str)] = &[
    ("a Roth IRA", "a traditional IRA"),
    ("baking soda", "baking powder"),
    ("a virus", "bacteria"),
    ("weather", "climate"),
    ("affect", "effect"),
    ("RAM", "storage"),
    ("an LLC", "a sole proprietorship"),
    ("espresso", "drip coffee"),
    ("HIIT", "steady cardio"),
    ("a crocodile", "an alligator"),
    ("OLED", "QLED"),
    ("a latte", "a flat white"),
];

pub(crate) const WORRIES: &[&str] = &[
    "my cat sleeps 16 hours a day",
    "my sourdough starter smells like nail polish",
    "my toddler only eats pasta",
    "my laptop fan is always loud",
    "my knee clicks when I squat",
    "my houseplant leaves are turning yellow",
    "my car makes a noise when I brake",
];

/// Personal context people add to a question.
pub(crate) const CONTEXTS: &[&str] = &[
    " I live in a small apartment.",
    " We have two kids under 5.",
    " I'm on a tight budget.",
    " I work night shifts.",
    " My partner is allergic to nuts.",
    " I'm 45 and out of shape.",
    " It's for a school project.",
    " I have about $200.",
    " I'm in Canada if that matters.",
    " I'm not very technical.",
    " This is urgent lol",
    " asking for my mum",
    " I'm a student.",
    " I have a dog.",
    " I already tried googling it.",
    " thanks in advance!",
];

pub(crate) const FOLLOW_UPS: &[&str] = &[
    "thanks! can you make it shorter?",
    "can you make it more formal?",
    "give me more examples",
    "can you put that in a table?",
    "why?",
    "and how long would that take?",
    "translate that to Spanish please",
    "that's too long, summarise in 3 bullet points",
    "perfect, thanks",
    "hmm that didn't work, any other ideas?",
    "can you explain the second point?",
    "what would you recommend for a beginner?",
    "ok and what if I only have a weekend?",
    "make it funnier",
    "is there a cheaper option?",
];

pub(crate) const EDITS: &[&str] = &[
    " (I'm a beginner)",
    " Please keep it under 100 words.",
    " I'm vegetarian btw",
    " for a 12 year old",
    " in British English",
    " — no bullet points",
    " quickly",
];

pub(crate) const LANGS: &[&str] = &[
    "Python",
    "TypeScript",
    "Go",
    "Rust",
    "Java",
    "Bash",
    "C#",
    "Kotlin",
];

pub(crate) const CODE_TASKS: &[&str] = &[
    "parses ISO 8601 dates",
    "deduplicates a list while keeping order",
    "retries an HTTP call with exponential backoff",
    "validates an email address",
    "computes a moving average over a stream",
    "flattens a nested dictionary",
    "reads a CSV and groups rows by a column",
    "merges two sorted arrays",
    "builds a table of contents from Markdown headings",
    "rate-limits calls per user",
    "chunks text into 500-token pieces",
    "hashes a large file in a streaming way",
    "finds the longest common prefix of a list of strings",
    "converts Roman numerals to integers",
    "paginates results from a REST API",
    "debounces a function",
];

pub(crate) const CODE_VARIANTS: &[&str] = &[
    " Add type hints.",
    " Use only the standard library.",
    " Return JSON only.",
    " Include unit tests.",
    " Make it async.",
    " Handle empty input.",
    " Explain the time complexity.",
    " No comments please.",
    " Keep it under 30 lines.",
    " Use a class instead.",
];

pub(crate) const ERRORS: &[&str] = &[
    "TypeError: 'NoneType' object is not subscriptable",
    "panic: runtime error: index out of range",
    "Cannot read properties of undefined (reading 'map')",
    "error[E0502]: cannot borrow as mutable",
    "java.lang.NullPointerException",
    "KeyError: 'id'",
];

pub(crate) const WORK_TASKS: &[&str] = &[
    "Summarise these meeting notes into action items",
    "Rewrite this paragraph for an executive audience",
    "Draft a reply to this customer email",
    "Create an outline for a quarterly business review",
    "List the risks of migrating our CRM to a new vendor",
    "Explain this Excel formula",
    "Turn these bullet points into a short status update",
    "Write a job description for a data engineer",
    "Proofread this slide text",
    "Suggest agenda items for a team offsite",
];

pub(crate) const WORK_SNIPPETS: &[&str] = &[
    "Q3 pipeline is down 8%, two deals slipped to Q4, hiring freeze in EMEA.",
    "Customer says the invoice was charged twice and wants a refund by Friday.",
    "=IFERROR(VLOOKUP(A2,Sheet2!A:C,3,FALSE),\"missing\")",
    "We shipped the new onboarding flow; activation up 4 points; support tickets flat.",
    "Vendor contract renews on the 30th; price increase of 12% proposed.",
];

pub(crate) const BRANDS: &[&str] = &[
    "Brightline Internet",
    "Cobalt Bank",
    "Fernway Airlines",
    "Hearthstone Insurance",
    "Juniper Mobile",
    "Larkspur Energy",
    "Meridian Fitness",
    "Northwind Outdoor",
];

pub(crate) const SUPPORT_INTENTS: &[&str] = &[
    "how do I reset my password",
    "my bill is higher than last month",
    "can I change my plan",
    "the app keeps logging me out",
    "how do I cancel",
    "where is my refund",
    "how do I update my payment card",
    "is there an outage right now",
    "can I pause my account",
    "how do I add a family member",
];

pub(crate) const PRODUCTS: &[&str] = &[
    "wireless earbuds",
    "standing desk",
    "air fryer",
    "running shoes",
    "robot vacuum",
    "electric kettle",
    "office chair",
    "phone case",
    "backpack",
    "yoga mat",
];

pub(crate) const REVIEW_BITS: &[&str] = &[
    "arrived two days late",
    "works exactly as described",
    "stopped working after a week",
    "great value for the price",
    "the instructions were confusing",
    "customer service was helpful",
    "feels cheap",
    "battery lasts forever",
    "louder than expected",
    "would buy again",
    "the colour is different from the photos",
    "easy to set up",
];

pub(crate) const TICKET_BITS: &[&str] = &[
    "cannot log in since the update",
    "charged twice for order",
    "package marked delivered but missing",
    "want to change shipping address",
    "app crashes on startup",
    "requesting invoice copy",
    "discount code not applied",
    "account locked after password reset",
];

pub(crate) const NAMES: &[&str] = &[
    "Acme Supplies",
    "Globex Ltd",
    "Initech GmbH",
    "Umbrella Foods",
    "Stark Logistics",
    "Wayne Print",
    "Soylent Farms",
    "Hooli Services",
];

pub(crate) const CITIES_SQL: &[&str] = &["Berlin", "Austin", "Lagos", "Osaka", "Lyon", "Denver"];

pub(crate) const SUBJECTS: &[&str] = &[
    "the French Revolution",
    "protein folding",
    "general relativity",
    "supply and demand",
    "the Krebs cycle",
    "public-key cryptography",
    "plate tectonics",
    "the Byzantine Empire",
    "Bayesian inference",
    "monetary policy",
    "CRISPR gene editing",
    "the TCP handshake",
    "natural selection",
    "the Marshall Plan",
    "entropy",
    "game theory",
    "the Silk Road",
    "neural network backpropagation",
    "the water cycle",
    "Keynesian economics",
    "the Treaty of Westphalia",
    "distributed consensus",
    "ocean acidification",
    "impressionism",
    "the immune response",
    "compilers",
    "the Meiji Restoration",
    "option pricing",
    "volcanism",
    "linear regression",
    "the Cold War",
    "operant conditioning",
    "database indexing",
    "the printing press",
    "antibiotic resistance",
    "Fourier transforms",
    "utilitarianism",
    "urban heat islands",
    "the Green Revolution",
    "semiconductor doping",
    "sorting algorithms",
    "the Ottoman Empire",
    "graph theory",
    "cognitive dissonance",
    "the nitrogen cycle",
    "garbage collection",
    "the Renaissance",
    "price elasticity",
    "stellar nucleosynthesis",
];

pub(crate) const AUDIENCES: &[&str] = &[
    "high-school student",
    "graduate student",
    "software engineer",
    "policy maker",
    "ten-year-old",
    "domain expert",
    "journalist",
    "first-year undergraduate",
];

pub(crate) const STYLES: &[&str] = &[
    "formal academic",
    "casual",
    "Shakespearean",
    "concise technical",
    "persuasive",
    "humorous",
];

pub(crate) const AGENT_GOALS: &[&str] = &[
    "find the three cheapest flights between two cities and book the best one",
    "fix a failing unit test in a Python repository",
    "refactor a module to remove a circular import",
    "collect quarterly revenue figures from a spreadsheet and chart them",
    "triage a GitHub issue and open a pull request with a fix",
    "migrate a database schema and backfill a new column",
    "write and run a script that deduplicates customer records",
    "set up a CI pipeline that runs linting and tests",
    "search the docs, then answer a configuration question with citations",
    "diagnose why a web service returns 502 errors under load",
];

pub(crate) const BENCH_SUBJECTS: &[&str] = &[
    "abstract algebra",
    "anatomy",
    "astronomy",
    "business ethics",
    "clinical knowledge",
    "college chemistry",
    "computer security",
    "econometrics",
    "electrical engineering",
    "formal logic",
    "global facts",
    "high school biology",
    "jurisprudence",
    "machine learning",
    "marketing",
    "moral scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "virology",
];
