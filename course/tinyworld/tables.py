"""The facts of the tiny world, written out by hand.

Every fact appears in the pretraining corpus (so the base model "knows" it) and becomes an
instruction task (so supervised fine-tuning can teach the model to *answer* in a chat format).
"""

CAPITALS = {
    "France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Germany": "Berlin", "Portugal": "Lisbon",
    "Greece": "Athens", "Austria": "Vienna", "Poland": "Warsaw", "Norway": "Oslo", "Sweden": "Stockholm",
    "Finland": "Helsinki", "Denmark": "Copenhagen", "Ireland": "Dublin", "Hungary": "Budapest",
    "Egypt": "Cairo", "Kenya": "Nairobi", "Ghana": "Accra", "Peru": "Lima", "Chile": "Santiago",
    "Cuba": "Havana", "Japan": "Tokyo", "China": "Beijing", "India": "Delhi", "Thailand": "Bangkok",
    "Vietnam": "Hanoi", "Russia": "Moscow", "Canada": "Ottawa", "Mexico": "Mexico City",
    "Argentina": "Buenos Aires", "Colombia": "Bogota", "Turkey": "Ankara", "Iran": "Tehran",
    "Iraq": "Baghdad", "Nepal": "Kathmandu", "Mongolia": "Ulaanbaatar", "Australia": "Canberra",
    "Belgium": "Brussels", "Switzerland": "Bern", "Morocco": "Rabat", "Nigeria": "Abuja",
}

ANTONYMS = {
    "hot": "cold", "big": "small", "fast": "slow", "happy": "sad", "light": "dark", "open": "closed",
    "early": "late", "full": "empty", "hard": "soft", "high": "low", "long": "short", "loud": "quiet",
    "new": "old", "rich": "poor", "strong": "weak", "thick": "thin", "wet": "dry", "young": "old",
    "clean": "dirty", "cheap": "expensive", "deep": "shallow", "heavy": "light", "near": "far",
    "safe": "dangerous", "sharp": "dull", "sweet": "sour", "tall": "short", "wide": "narrow",
    "win": "lose", "push": "pull", "above": "below", "inside": "outside", "first": "last",
    "begin": "end", "buy": "sell", "give": "take", "good": "bad", "true": "false", "up": "down",
    "day": "night",
}

PLURALS = {
    "cat": "cats", "dog": "dogs", "house": "houses", "tree": "trees", "book": "books", "car": "cars",
    "child": "children", "mouse": "mice", "goose": "geese", "man": "men", "woman": "women",
    "tooth": "teeth", "foot": "feet", "person": "people", "box": "boxes", "bus": "buses",
    "glass": "glasses", "dish": "dishes", "city": "cities", "baby": "babies", "lady": "ladies",
    "knife": "knives", "leaf": "leaves", "wolf": "wolves", "life": "lives", "potato": "potatoes",
    "hero": "heroes", "sheep": "sheep", "fish": "fish", "deer": "deer", "cactus": "cacti",
    "ox": "oxen", "city hall": "city halls", "key": "keys", "day": "days", "toy": "toys",
    "church": "churches", "fox": "foxes", "wish": "wishes", "party": "parties",
}

ANIMAL_SOUNDS = {
    "cow": "moo", "dog": "woof", "cat": "meow", "duck": "quack", "sheep": "baa", "pig": "oink",
    "horse": "neigh", "owl": "hoot", "frog": "croak", "lion": "roar", "snake": "hiss", "bee": "buzz",
    "mouse": "squeak", "goat": "bleat", "donkey": "bray", "crow": "caw", "wolf": "howl",
    "chicken": "cluck", "rooster": "crow", "turkey": "gobble", "dove": "coo", "elephant": "trumpet",
    "bear": "growl", "hyena": "laugh", "monkey": "chatter", "goose": "honk", "cricket": "chirp",
    "seal": "bark", "camel": "grunt", "parrot": "squawk",
}

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
