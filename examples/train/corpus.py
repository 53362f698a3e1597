"""The toy corpus: short chats in which a user asks for a little story and the model tells one.

Every sentence comes from the templates and word lists below, written for this project and
placed in the public domain (CC0), so the corpus and anything trained on it can be
redistributed. It is generated from a seed, so the same seed gives the same text.

    /usr/bin/python3 examples/train/corpus.py --seed 1 --dialogues 100 > sample.txt

The files the tests read come from it too (train_toy_pair.py trains on seed 1, 20000 chats):
    corpus.py --seed 2 --dialogues 6 > tests/data/toy-heldout.txt         # held-out chats
    corpus.py --words > tests/data/toy-corpus-words.txt                   # every word of the training text
"""
import argparse
import random
import re

ANIMALS = ["fox", "cat", "dog", "bird", "owl", "rabbit", "bear", "mouse", "frog", "duck",
           "horse", "goat", "wolf", "deer", "fish", "turtle"]
ADJECTIVES = ["little", "big", "old", "young", "brave", "shy", "happy", "sleepy", "clever",
              "quiet", "small", "kind", "curious", "gentle"]
COLOURS = ["red", "brown", "white", "black", "grey", "green", "yellow", "blue"]
PLACES = ["forest", "river", "garden", "village", "hill", "meadow", "lake", "farm", "field",
          "valley", "beach", "town"]
HOMES = {"forest": "under a tall tree", "river": "near the water", "garden": "behind a stone wall",
         "village": "in a warm house", "hill": "on the top of the hill", "meadow": "in the long grass",
         "lake": "by the cold water", "farm": "in an old barn", "field": "at the edge of the field",
         "valley": "in a deep valley", "beach": "in the sand", "town": "near the market"}
TIMES = ["Every morning", "Every evening", "In the summer", "In the winter", "On sunny days",
         "When it rained", "At night", "In the spring"]
ACTIVITIES = ["walked to the {place}", "looked for food", "sang a song", "played with the other animals",
              "watched the sky", "counted the stars", "ran in the {place}", "slept in the sun",
              "read an old book", "picked flowers", "built a little house", "swam in the lake"]
THINGS = ["a shiny stone", "a lost key", "a red apple", "a small boat", "an old map", "a golden ring",
          "a blue feather", "a wooden box", "a warm coat", "a broken cup"]
FEELINGS = ["happy", "sad", "tired", "surprised", "afraid", "proud", "hungry", "excited"]
SAYINGS = ["Let us be friends", "Can you help me", "I am lost", "Look at this",
           "We can do it together", "Thank you for your help", "It is a beautiful day",
           "Where are you going"]
ENDINGS = ["From that day on, the {a} and the {b} were good friends.",
           "In the end, the {a} went home and slept well.",
           "The {a} never forgot that day.",
           "And the {a} lived happily in the {place}.",
           "After that, the {a} and the {b} met every day in the {place}.",
           "That night, the {a} smiled and closed its eyes."]
REQUESTS = ["Tell me a story about the {a}.", "Write a story about a {adj} {a}.",
            "Can you tell me a story about a {a}?", "Tell me a short story about the {a} and the {b}.",
            "What did the {a} do in the {place}?", "Please tell me about the {adj} {a}."]


def story(rng, a, b, adj, place):
    """A story about animal `a`, who meets `b`, told in the requested `place`."""
    colour, thing, feeling = rng.choice(COLOURS), rng.choice(THINGS), rng.choice(FEELINGS)
    other_place = rng.choice([p for p in PLACES if p != place])
    act = rng.choice(ACTIVITIES).format(place=other_place)
    sentences = [
        rng.choice(["Once upon a time, there was a {adj} {colour} {a} who lived in the {place}.",
                    "There was once a {adj} {a} in the {place}.",
                    "Long ago, a {adj} {colour} {a} lived {home}."]),
        "{time}, the {a} {act}.",
        rng.choice(["One day, the {a} found {thing}.", "One day, the {a} met a {b}.",
                    "One day, the {a} saw a {b} near the {place}."]),
        rng.choice(["The {a} was very {feeling}.", "The {b} looked at the {a} and said, \"{saying}.\"",
                    "The {a} said to the {b}, \"{saying}.\""]),
        rng.choice(["Together they walked to the {other}.", "The {b} showed the {a} the way to the {other}.",
                    "They shared {thing} and talked until the sun went down."]),
        rng.choice(ENDINGS),
    ]
    count = rng.randint(4, 6)
    chosen = sentences[:count - 1] + [sentences[-1]]
    text = " ".join(chosen)
    return text.format(a=a, b=b, adj=adj, colour=colour, place=place, home=HOMES[place], time=rng.choice(TIMES),
                       act=act, thing=thing, feeling=feeling, saying=rng.choice(SAYINGS), other=other_place)


def dialogue(rng):
    """One chat in the Gemma 4 format, <bos> first: a request and the story that answers it."""
    a, b = rng.sample(ANIMALS, 2)
    adj, place = rng.choice(ADJECTIVES), rng.choice(PLACES)
    request = rng.choice(REQUESTS).format(a=a, b=b, adj=adj, place=place)
    text = f"<bos><|turn>user\n{request}<turn|>\n<|turn>model\n{story(rng, a, b, adj, place)}<turn|>\n"
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dialogues", type=int, default=20000)
    parser.add_argument("--words", action="store_true", help="print the distinct words of the text instead, lower case")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    text = "".join(dialogue(rng) for _ in range(args.dialogues))
    if args.words:
        text = re.sub(r"<[^>]*>", " ", text)  # control tokens are not words
        print("\n".join(sorted(set(re.findall(r"[a-z']+", text.lower())))))
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
