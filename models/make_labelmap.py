#!/usr/bin/env python3
"""Build `imagenet_tags.tsv`: the 1000 ImageNet classes as tags people search for.

ImageNet labels are WordNet synonyms ("tabby, tabby cat"), not keywords. This script walks
each class's WordNet 3.0 hypernyms (ImageNet wnids are WordNet 3.0 noun offsets) and files
it under a short hierarchy a photographer would browse, e.g. `animal|mammal|cat`.

How a class gets its path:
  * prefix: the nearest synset up the hypernym graph (breadth-first, all hypernyms, first
    listed first) that is in GROUPS; every class must reach one.
  * leaf: the class's entry in LEAVES, else the nearest synset at or above it in KINDS
    (this collapses breeds and species into the word people use: every domestic cat is a
    "cat", every parrot a "parrot"), else the class's first WordNet lemma.
  * PATHS replaces all of that for classes WordNet files where no photographer would look.
Every table entry carries the synset's first lemma, checked against WordNet, so an offset
typo fails loudly instead of filing classes in the wrong place.

Runs with plain python3 and no third-party packages:
    python3 models/make_labelmap.py [--wordnet /usr/share/wordnet/data.noun]
    python3 models/make_labelmap.py --no-background --out models/imagenet1k_tags.tsv
Output is deterministic; bump VERSION whenever the tables change, because the version is
stored with every tagged photo and tells `refine` which photos to re-tag.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

VERSION = "1"
HERE = Path(__file__).resolve().parent
DEFAULT_WORDNET = Path("/usr/share/wordnet/data.noun")
SEP = "|"

# Synset offset -> (first lemma, tag path prefix). Top levels: animal, plant, food, place,
# person, architecture, vehicle, clothing, object. The broad synsets (artifact, structure,
# communication) are catch-alls; the narrower ones give a useful middle level.
GROUPS: dict[str, tuple[str, str]] = {
    # Animals: one level for the class of animal; invertebrates other than insects sit
    # directly under "animal" (nobody searches "invertebrate" or "arthropod").
    "00015388": ("animal", "animal"),
    "01861778": ("mammal", "animal|mammal"),
    "01503061": ("bird", "animal|bird"),
    "02512053": ("fish", "animal|fish"),
    "01661091": ("reptile", "animal|reptile"),
    "01627424": ("amphibian", "animal|amphibian"),
    "02159955": ("insect", "animal|insect"),
    # Plants. Fungi are not plants, but a photographer files a mushroom under nature/plant.
    "00017222": ("plant", "plant"),
    "13086908": ("plant_part", "plant"),
    "11669921": ("flower", "plant|flower"),
    "12992868": ("fungus", "plant"),
    # Food and drink.
    "00021265": ("food", "food"),
    "07555863": ("food", "food"),
    "07705931": ("edible_fruit", "food|fruit"),
    "07707451": ("vegetable", "food|vegetable"),
    "07881800": ("beverage", "food|drink"),
    # Places: landscapes, and shops whose photos are storefronts and interiors.
    "09287968": ("geological_formation", "place"),
    "04202417": ("shop", "place|shop"),
    "03722288": ("marketplace", "place|shop"),
    "00007846": ("person", "person"),
    # Built structures: "architecture" is the photographer's word; bridges, dams and fences
    # are not buildings.
    "04341686": ("structure", "architecture"),
    "03327234": ("fence", "architecture|fence"),
    "02898711": ("bridge", "architecture|bridge"),
    "04105068": ("roof", "architecture|roof"),
    # Vehicles. Trains and buses are "public transport" under conveyance in WordNet.
    "04524313": ("vehicle", "vehicle"),
    "03100490": ("conveyance", "vehicle"),
    "03322940": ("farm_machine", "vehicle"),
    "02958343": ("car", "vehicle|car"),
    "04490091": ("truck", "vehicle|truck"),
    "02924116": ("bus", "vehicle|bus"),
    "04468005": ("train", "vehicle|train"),
    "03684823": ("locomotive", "vehicle|train"),
    "02959942": ("car", "vehicle|train"),  # the railway car
    "04530566": ("vessel", "vehicle|boat"),  # watercraft: ships file under boat too
    "02686568": ("aircraft", "vehicle|aircraft"),
    "02834778": ("bicycle", "vehicle|bicycle"),
    # Clothing. WordNet puts footwear beside clothing, not under it.
    "03051540": ("clothing", "clothing"),
    "03380867": ("footwear", "clothing|footwear"),
    "03381126": ("footwear", "clothing|footwear"),
    "03502509": ("headdress", "clothing|hat"),
    "03597469": ("jewelry", "clothing|jewelry"),
    # Everything else made by people.
    "00021939": ("artifact", "object"),
    "00033020": ("communication", "object"),
    "03800933": ("musical_instrument", "object|musical instrument"),
    "03405725": ("furniture", "object|furniture"),
    "03278248": ("electronic_equipment", "object|electronics"),
    "03277771": ("electronic_device", "object|electronics"),
    "03269401": ("electrical_device", "object|electronics"),
    "03082979": ("computer", "object|electronics"),
    "03926148": ("photographic_equipment", "object|electronics"),
    "03621049": ("kitchen_utensil", "object|kitchenware"),
    "04381994": ("tableware", "object|kitchenware"),
    "03241496": ("drinking_vessel", "object|kitchenware"),
    "03438257": ("glass", "object|kitchenware"),
    "04183329": ("shaker", "object|kitchenware"),
    "03848348": ("opener", "object|kitchenware"),
    "02729837": ("appliance", "object|appliance"),
    "03528263": ("home_appliance", "object|appliance"),
    "04451818": ("tool", "object|tool"),
    "03997484": ("power_tool", "object|tool"),
    "04565375": ("weapon", "object|weapon"),
    "02739668": ("armor", "object|armor"),
    "04285146": ("sports_equipment", "object|sports equipment"),
    "04285622": ("sports_implement", "object|sports equipment"),
    "02778669": ("ball", "object|sports equipment"),
    "03964744": ("plaything", "object|toy"),
    "04028315": ("puzzle", "object|toy"),
    "04447443": ("toiletry", "object|cosmetics"),
    "02773037": ("bag", "object|bag"),
    "03309808": ("fabric", "object|fabric"),
}

# Synset offset -> (first lemma, leaf): every class at or below the synset gets this leaf
# instead of its own name. Used where the classes are breeds, species or varieties that
# the model confuses with each other and that people search by the common word.
KINDS: dict[str, tuple[str, str]] = {
    "02084071": ("dog", "dog"),
    "02121808": ("domestic_cat", "cat"),
    "02114100": ("wolf", "wolf"),
    "02118333": ("fox", "fox"),
    "02131653": ("bear", "bear"),
    "02324045": ("rabbit", "rabbit"),
    "02355227": ("squirrel", "squirrel"),
    "02374451": ("horse", "horse"),
    "02411705": ("sheep", "sheep"),
    "02437136": ("camel", "camel"),
    "02484322": ("monkey", "monkey"),
    "02496913": ("lemur", "lemur"),
    "02503517": ("elephant", "elephant"),
    "02062744": ("whale", "whale"),
    "01816887": ("parrot", "parrot"),
    "01529672": ("finch", "finch"),
    "01613294": ("eagle", "eagle"),
    "01621127": ("owl", "owl"),
    "01795088": ("grouse", "grouse"),
    "01846331": ("duck", "duck"),
    "01858441": ("swan", "swan"),
    "02002075": ("stork", "stork"),
    "02008041": ("heron", "heron"),
    "02055803": ("penguin", "penguin"),
    "02026059": ("sandpiper", "sandpiper"),
    "01482330": ("shark", "shark"),
    "01495701": ("ray", "ray"),
    "02534734": ("salmon", "salmon"),
    "01662784": ("turtle", "turtle"),
    "01674464": ("lizard", "lizard"),
    "01674990": ("gecko", "gecko"),
    "01693783": ("chameleon", "chameleon"),
    "01697178": ("crocodile", "crocodile"),
    "01699831": ("dinosaur", "dinosaur"),
    "01726692": ("snake", "snake"),
    "01639765": ("frog", "frog"),
    "01629276": ("salamander", "salamander"),
    "01630284": ("newt", "newt"),
    "01976957": ("crab", "crab"),
    "01982650": ("lobster", "lobster"),
    "02164464": ("beetle", "beetle"),
    "02274259": ("butterfly", "butterfly"),
    "01772222": ("spider", "spider"),
    "12041446": ("orchid", "orchid"),
    "12992868": ("fungus", "mushroom"),
    "07715561": ("squash", "squash"),
    "02876657": ("bottle", "bottle"),
    "03046257": ("clock", "clock"),
    "03682487": ("lock", "lock"),
    "03467517": ("guitar", "guitar"),
    "03928116": ("piano", "piano"),
    "03815615": ("necktie", "tie"),
    "02942699": ("camera", "camera"),
    "03906997": ("pen", "pen"),
    "03151077": ("curtain", "curtain"),
    "04230808": ("skirt", "skirt"),
    "04371563": ("swimsuit", "swimsuit"),
}

# ImageNet wnid -> (first lemma, leaf): the plain word for a class whose first lemma is
# obscure or ambiguous ("hen" is a chicken, "sax" a saxophone, "notebook" a laptop), or
# its own name kept where a KINDS collapse would lose a word people search ("ladybug").
LEAVES: dict[str, tuple[str, str]] = {
    # birds
    "n01514668": ("cock", "chicken"),
    "n01514859": ("hen", "chicken"),
    "n01608432": ("kite", "hawk"),
    "n01601694": ("water_ouzel", "dipper"),
    "n02025239": ("ruddy_turnstone", "turnstone"),
    "n02017213": ("European_gallinule", "gallinule"),
    "n02018207": ("American_coot", "coot"),
    # reptiles and amphibians kept apart from their collapsed kind
    "n01632777": ("axolotl", "axolotl"),
    "n01677366": ("common_iguana", "iguana"),
    "n01695060": ("Komodo_dragon", "komodo dragon"),
    "n01698640": ("American_alligator", "alligator"),
    # invertebrates
    "n02165456": ("ladybug", "ladybug"),
    "n02231487": ("walking_stick", "stick insect"),
    "n01770081": ("harvestman", "daddy longlegs"),
    "n01968897": ("chambered_nautilus", "nautilus"),
    "n01917289": ("brain_coral", "coral"),
    # fish
    "n02607072": ("anemone_fish", "clownfish"),
    "n02655020": ("puffer", "pufferfish"),
    "n02606052": ("rock_beauty", "angelfish"),
    # mammals
    "n02114855": ("coyote", "coyote"),
    "n02395406": ("hog", "pig"),
    "n02403003": ("ox", "cow"),
    "n02415577": ("bighorn", "bighorn sheep"),
    "n02457408": ("three-toed_sloth", "sloth"),
    "n02443484": ("black-footed_ferret", "ferret"),
    "n02509815": ("lesser_panda", "red panda"),
    "n02510455": ("giant_panda", "panda"),
    "n02116738": ("African_hunting_dog", "african wild dog"),
    # food
    "n07742313": ("Granny_Smith", "apple"),
    "n07714571": ("head_cabbage", "cabbage"),
    "n07716358": ("zucchini", "zucchini"),
    "n07684084": ("French_loaf", "baguette"),
    "n07584110": ("consomme", "soup"),
    "n07590611": ("hot_pot", "stew"),
    "n07615774": ("ice_lolly", "popsicle"),
    "n07831146": ("carbonara", "pasta"),
    "n07892512": ("red_wine", "wine"),
    "n07920052": ("espresso", "coffee"),
    "n07579787": ("plate", "meal"),
    "n07697537": ("hotdog", "hot dog"),
    "n07875152": ("potpie", "pot pie"),
    "n07871810": ("meat_loaf", "meatloaf"),
    # plants, places, people
    "n12620546": ("hip", "rose hip"),
    "n12768682": ("buckeye", "horse chestnut"),
    "n09193705": ("alp", "mountain"),
    "n09428293": ("seashore", "beach"),
    "n09332890": ("lakeside", "lake"),
    "n09399592": ("promontory", "headland"),
    "n09835506": ("ballplayer", "baseball player"),
    # objects
    "n02747177": ("ashcan", "trash can"),
    "n02749479": ("assault_rifle", "rifle"),
    "n02786058": ("Band_Aid", "bandage"),
    "n02788148": ("bannister", "banister"),
    "n02814533": ("beach_wagon", "station wagon"),
    "n02814860": ("beacon", "lighthouse"),
    "n02808304": ("bath_towel", "towel"),
    "n02835271": ("bicycle-built-for-two", "tandem bicycle"),
    "n02837789": ("bikini", "bikini"),
    "n02840245": ("binder", "ring binder"),
    "n02877765": ("bottlecap", "bottle cap"),
    "n02883205": ("bow_tie", "bow tie"),
    "n02892767": ("brassiere", "bra"),
    "n02930766": ("cab", "taxi"),
    "n02939185": ("caldron", "cauldron"),
    "n02971356": ("carton", "cardboard box"),
    "n02977058": ("cash_machine", "atm"),
    "n03000684": ("chain_saw", "chainsaw"),
    "n03016953": ("chiffonier", "chest of drawers"),
    "n03017168": ("chime", "wind chime"),
    "n03063599": ("coffee_mug", "mug"),
    "n03085013": ("computer_keyboard", "keyboard"),
    "n03089624": ("confectionery", "candy store"),
    "n03110669": ("cornet", "trumpet"),
    "n03133878": ("Crock_Pot", "slow cooker"),
    "n03180011": ("desktop_computer", "computer"),
    "n03187595": ("dial_telephone", "telephone"),
    "n03197337": ("digital_watch", "watch"),
    "n03207743": ("dishrag", "dishcloth"),
    "n03208938": ("disk_brake", "disc brake"),
    "n03218198": ("dogsled", "dog sled"),
    "n03240683": ("drilling_platform", "oil rig"),
    "n03272562": ("electric_locomotive", "locomotive"),
    "n03337140": ("file", "filing cabinet"),
    "n03345487": ("fire_engine", "fire truck"),
    "n03388549": ("four-poster", "bed"),
    "n03424325": ("gasmask", "gas mask"),
    "n03476684": ("hair_slide", "hair clip"),
    "n03483316": ("hand_blower", "hair dryer"),
    "n03485407": ("hand-held_computer", "handheld computer"),
    "n03594734": ("jean", "jeans"),
    "n03595614": ("jersey", "t-shirt"),
    "n03599486": ("jinrikisha", "rickshaw"),
    "n03673027": ("liner", "ocean liner"),
    "n03692522": ("loupe", "magnifying glass"),
    "n03697007": ("lumbermill", "sawmill"),
    "n03706229": ("magnetic_compass", "compass"),
    "n03729826": ("matchstick", "match"),
    "n03742115": ("medicine_chest", "medicine cabinet"),
    "n03763968": ("military_uniform", "uniform"),
    "n03777568": ("Model_T", "vintage car"),
    "n03791053": ("motor_scooter", "scooter"),
    "n03793489": ("mouse", "computer mouse"),
    "n03825788": ("nipple", "baby bottle"),
    "n03832673": ("notebook", "laptop"),
    "n03874293": ("paddlewheel", "paddle wheel"),
    "n03877472": ("pajama", "pajamas"),
    "n03891251": ("park_bench", "bench"),
    "n03902125": ("pay-phone", "payphone"),
    "n03908618": ("pencil_box", "pencil case"),
    "n03929660": ("pick", "guitar pick"),
    "n03930630": ("pickup", "pickup truck"),
    "n03947888": ("pirate", "pirate ship"),
    "n03954731": ("plane", "wood plane"),
    "n03991062": ("pot", "flowerpot"),
    "n03995372": ("power_drill", "drill"),
    "n03998194": ("prayer_rug", "rug"),
    "n04008634": ("projectile", "missile"),
    "n04033901": ("quill", "quill"),
    "n04037443": ("racer", "race car"),
    "n04065272": ("recreational_vehicle", "camper"),
    "n04067472": ("reel", "fishing reel"),
    "n04116512": ("rubber_eraser", "eraser"),
    "n04118776": ("rule", "ruler"),
    "n04131690": ("saltshaker", "salt shaker"),
    "n04136333": ("sarong", "sarong"),
    "n04141076": ("sax", "saxophone"),
    "n04204238": ("shopping_basket", "basket"),
    "n04243546": ("slot", "slot machine"),
    "n04263257": ("soup_bowl", "bowl"),
    "n04311004": ("steel_arch_bridge", "arch bridge"),
    "n04335435": ("streetcar", "tram"),
    "n04344873": ("studio_couch", "sofa"),
    "n04367480": ("swab", "mop"),
    "n04371430": ("swimming_trunks", "swimming trunks"),
    "n04372370": ("switch", "light switch"),
    "n04380533": ("table_lamp", "lamp"),
    "n04399382": ("teddy", "teddy bear"),
    "n04417672": ("thatch", "thatched roof"),
    "n04447861": ("toilet_seat", "toilet"),
    "n04462240": ("toyshop", "toy shop"),
    "n04505470": ("typewriter_keyboard", "typewriter"),
    "n04515003": ("upright", "piano"),
    "n04517823": ("vacuum", "vacuum cleaner"),
    "n04553703": ("washbasin", "sink"),
    "n04554684": ("washer", "washing machine"),
    "n04560804": ("water_jug", "jug"),
    "n04579145": ("whiskey_jug", "jug"),
    "n04590129": ("window_shade", "window blind"),
    "n04597913": ("wooden_spoon", "spoon"),
    "n04604644": ("worm_fence", "rail fence"),
    "n04606251": ("wreck", "shipwreck"),
    "n07248320": ("book_jacket", "book"),
    "n02704792": ("amphibian", "amphibious vehicle"),
    "n02782093": ("balloon", "hot air balloon"),
    "n02992529": ("cellular_telephone", "mobile phone"),
}

# ImageNet wnid -> (first lemma, full tag path), for classes WordNet files where a
# photographer would not look (a cup of punch as food, a car grille as a grate, a seat belt
# as clothing) or that belong with another group (a space bar is a keyboard photo).
PATHS: dict[str, tuple[str, str]] = {
    "n01871265": ("tusker", "animal|mammal|elephant"),
    "n04275548": ("spider_web", "animal|spider web"),
    "n02825657": ("bell_cote", "architecture|bell tower"),
    "n04562935": ("water_tower", "architecture|water tower"),
    "n02834397": ("bib", "clothing|bib"),
    "n03045698": ("cloak", "clothing|cloak"),
    "n03929855": ("pickelhaube", "clothing|hat|pickelhaube"),
    "n03710637": ("maillot", "clothing|leotard"),
    "n03724870": ("mask", "clothing|mask"),
    "n04229816": ("ski_mask", "clothing|ski mask"),
    "n04355933": ("sunglass", "clothing|sunglasses"),
    "n04356056": ("sunglasses", "clothing|sunglasses"),
    "n03530642": ("honeycomb", "food|honeycomb"),
    "n12144580": ("corn", "food|vegetable|corn"),
    "n13133613": ("ear", "food|vegetable|corn"),
    "n03271574": ("electric_fan", "object|appliance|fan"),
    "n04265275": ("space_heater", "object|appliance|heater"),
    "n04330267": ("stove", "object|appliance|stove"),
    "n02895154": ("breastplate", "object|armor|breastplate"),
    "n02727426": ("apiary", "object|beehive"),
    "n09229709": ("bubble", "object|bubble"),
    "n03026506": ("Christmas_stocking", "object|christmas stocking"),
    "n03065424": ("coil", "object|coil"),
    "n06785654": ("crossword_puzzle", "object|crossword"),
    "n02978881": ("cassette", "object|electronics|cassette"),
    "n03492542": ("hard_disc", "object|electronics|hard disk"),
    "n04264628": ("space_bar", "object|electronics|keyboard"),
    "n03924679": ("photocopier", "object|electronics|photocopier"),
    "n04009552": ("projector", "object|electronics|projector"),
    "n04041544": ("radio", "object|electronics|radio"),
    "n04074963": ("remote_control", "object|electronics|remote control"),
    "n04404412": ("television", "object|electronics|television"),
    "n06359193": ("web_site", "object|electronics|website"),
    "n03041632": ("cleaver", "object|kitchenware|cleaver"),
    "n07930864": ("cup", "object|kitchenware|cup"),
    "n03961711": ("plate_rack", "object|kitchenware|dish rack"),
    "n03259280": ("Dutch_oven", "object|kitchenware|dutch oven"),
    "n03633091": ("ladle", "object|kitchenware|ladle"),
    "n03733805": ("measuring_cup", "object|kitchenware|measuring cup"),
    "n03786901": ("mortar", "object|kitchenware|mortar and pestle"),
    "n03950228": ("pitcher", "object|kitchenware|pitcher"),
    "n04332243": ("strainer", "object|kitchenware|strainer"),
    "n07565083": ("menu", "object|menu"),
    "n03250847": ("drumstick", "object|musical instrument|drumstick"),
    "n03887697": ("paper_towel", "object|paper towel"),
    "n03891332": ("parking_meter", "object|parking meter"),
    "n03920288": ("Petri_dish", "object|petri dish"),
    "n02892201": ("brass", "object|plaque"),
    "n04149813": ("scoreboard", "object|scoreboard"),
    "n04204347": ("shopping_cart", "object|shopping cart"),
    "n04238763": ("slide_rule", "object|slide rule"),
    "n04019541": ("puck", "object|sports equipment|hockey puck"),
    "n04228054": ("ski", "object|sports equipment|ski"),
    "n04336792": ("stretcher", "object|stretcher"),
    "n03792972": ("mountain_tent", "object|tent"),
    "n15075141": ("toilet_tissue", "object|toilet paper"),
    "n02966687": ("carpenter's_kit", "object|tool|toolbox"),
    "n02797295": ("barrow", "object|tool|wheelbarrow"),
    "n03944341": ("pinwheel", "object|toy|pinwheel"),
    "n02894605": ("breakwater", "place|breakwater"),
    "n03032252": ("cinema", "place|cinema"),
    "n03216828": ("dock", "place|dock"),
    "n03529860": ("home_theater", "place|home theater"),
    "n03661043": ("library", "place|library"),
    "n03733281": ("maze", "place|maze"),
    "n03899768": ("patio", "place|patio"),
    "n03933933": ("pier", "place|pier"),
    "n04081281": ("restaurant", "place|restaurant"),
    "n04296562": ("stage", "place|stage"),
    "n07802026": ("hay", "plant|hay"),
    "n04592741": ("wing", "vehicle|aircraft|wing"),
    "n03459775": ("grille", "vehicle|car|grille"),
    "n04162706": ("seat_belt", "vehicle|car|seat belt"),
    "n02974003": ("car_wheel", "vehicle|car|wheel"),
    "n02965783": ("car_mirror", "vehicle|car|wing mirror"),
    "n03445924": ("golfcart", "vehicle|golf cart"),
}


@dataclass(frozen=True)
class Synset:
    lemmas: tuple[str, ...]
    hypernyms: tuple[str, ...]  # offsets, class (@) and instance (@i) hypernyms in file order


def read_wordnet(path: Path) -> dict[str, Synset]:
    """Parse WordNet's data.noun: `offset lexfile n w_cnt (lemma lex_id)* p_cnt (ptr)* | gloss`."""
    synsets: dict[str, Synset] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.startswith(" "):  # licence header
                continue
            fields = line.split(" | ", 1)[0].split()
            n_lemmas = int(fields[3], 16)
            lemmas = tuple(fields[4 + 2 * i] for i in range(n_lemmas))
            at = 4 + 2 * n_lemmas
            n_pointers = int(fields[at])
            pointers = [fields[at + 1 + 4 * i : at + 5 + 4 * i] for i in range(n_pointers)]
            hypernyms = tuple(o for sym, o, pos, _ in pointers if sym in ("@", "@i") and pos == "n")
            synsets[fields[0]] = Synset(lemmas, hypernyms)
    return synsets


def check_lemmas(synsets: dict[str, Synset], wnids: set[str]) -> None:
    """Every table entry names its synset's first lemma; catches offset typos."""
    for table_name, table, by_wnid in (
        ("GROUPS", GROUPS, False),
        ("KINDS", KINDS, False),
        ("LEAVES", LEAVES, True),
        ("PATHS", PATHS, True),
    ):
        for key, (lemma, _) in table.items():
            offset = key[1:] if by_wnid else key
            if by_wnid and key not in wnids:
                raise SystemExit(f"{table_name}: {key} is not an ImageNet class")
            if offset not in synsets or synsets[offset].lemmas[0] != lemma:
                found = synsets[offset].lemmas[0] if offset in synsets else "nothing"
                raise SystemExit(f"{table_name}: {key} is {found!r}, table says {lemma!r}")
    both = LEAVES.keys() & PATHS.keys()
    if both:
        raise SystemExit(f"in both LEAVES and PATHS (PATHS would win): {sorted(both)}")


def ancestors(synsets: dict[str, Synset], start: str) -> list[str]:
    """`start` and all its hypernyms, breadth-first, first-listed hypernym first."""
    order, queue, seen = [], deque([start]), {start}
    while queue:
        offset = queue.popleft()
        order.append(offset)
        for up in synsets[offset].hypernyms:
            if up not in seen:
                seen.add(up)
                queue.append(up)
    return order


def nearest(
    synsets: dict[str, Synset], start: str, table: dict[str, tuple[str, str]]
) -> str | None:
    """The value of the most specific table entry at or above `start`.

    An entry that is itself above another reachable entry loses even when it is closer:
    a dog is a domestic animal two steps up and a mammal four steps up, and it belongs
    under mammal. Among entries on unrelated branches (a missile is a rocket and a
    weapon) the closest wins.
    """
    hits = [o for o in ancestors(synsets, start) if o in table]
    above_others = {a for hit in hits for a in ancestors(synsets, hit)[1:]}
    specific = [o for o in hits if o not in above_others]
    return table[specific[0]][1] if specific else None


def plain(lemma: str) -> str:
    """A WordNet lemma as a keyword: lower case, spaces for underscores."""
    return lemma.replace("_", " ").lower()


def tag_path(synsets: dict[str, Synset], wnid: str) -> str:
    if wnid in PATHS:
        return PATHS[wnid][1]
    offset = wnid[1:]
    prefix = nearest(synsets, offset, GROUPS)
    if prefix is None:
        raise SystemExit(f"{wnid} ({synsets[offset].lemmas[0]}) reaches no GROUPS entry")
    if wnid in LEAVES:
        leaf = LEAVES[wnid][1]
    else:
        leaf = nearest(synsets, offset, KINDS) or plain(synsets[offset].lemmas[0])
    return f"{prefix}{SEP}{leaf}"


def check_path(path: str, wnid: str) -> None:
    levels = path.split(SEP)
    if not 2 <= len(levels) <= 4 or any(not lv or lv != lv.strip().lower() for lv in levels):
        raise SystemExit(f"{wnid}: bad tag path {path!r}")
    if any(ch in path for ch in ",;\t\n_"):
        raise SystemExit(f"{wnid}: tag path {path!r} has a separator character in it")


def build(wordnet: Path, background: bool = True) -> str:
    """The TSV text; without `background`, output 0 is the first class (EfficientNet-Lite0)."""
    wnids = (HERE / "imagenet_wnids.txt").read_text(encoding="utf-8").split()
    labels = (HERE / "imagenet_labels.txt").read_text(encoding="utf-8").splitlines()
    if len(labels) != len(wnids) + 1 or labels[0] != "background":
        raise SystemExit("imagenet_labels.txt must be 'background' plus one line per wnid")
    synsets = read_wordnet(wordnet)
    missing = [w for w in wnids if w[1:] not in synsets]
    if missing:
        raise SystemExit(f"not in {wordnet}: {missing[:5]} (is it WordNet 3.0?)")
    check_lemmas(synsets, set(wnids))
    rows = [
        f"# version: {VERSION}",
        "# ImageNet class -> tag paths; generated by models/make_labelmap.py from WordNet 3.0.",
        "# index\twnid\tlabel\ttag paths (levels joined by '|', paths by ';')",
        *([f"0\t\t{labels[0]}\t"] if background else []),
    ]
    pairs = zip(wnids, labels[1:], strict=True)
    for index, (wnid, label) in enumerate(pairs, start=int(background)):
        path = tag_path(synsets, wnid)
        check_path(path, wnid)
        rows.append(f"{index}\t{wnid}\t{label}\t{path}")
    return "\n".join(rows) + "\n"


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--wordnet", type=Path, default=DEFAULT_WORDNET, help="WordNet 3.0 data.noun"
    )
    parser.add_argument("--out", type=Path, default=HERE / "imagenet_tags.tsv")
    parser.add_argument(
        "--no-background",
        action="store_true",
        help="1000 outputs, no background first (imagenet1k_tags.tsv, EfficientNet-Lite0)",
    )
    args = parser.parse_args(argv)
    if not args.wordnet.is_file():
        print(
            f"error: no WordNet noun data at {args.wordnet} (Debian: apt install wordnet-base)",
            file=sys.stderr,
        )
        return 1
    write_atomic(args.out, build(args.wordnet, background=not args.no_background))
    return 0


if __name__ == "__main__":
    sys.exit(main())
