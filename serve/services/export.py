"""Export of one person's data: JSON (everything), CSV (one row per item) and a FHIR R5
Bundle of NutritionIntake resources (one per meal), validated with fhir.resources."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from nutrition_db import NUTRIENTS, meal_nutrients
from serve.db.base import as_utc, utcnow
from serve.db.tables.analyses import Analysis
from serve.db.tables.core import User
from serve.db.tables.pairs import MealPair
from serve.schemas.privacy import UserExport
from serve.schemas.users import UserPublic
from serve.services.analyses import analysis_payload, correction_history
from serve.services.diary import MealLog, user_meals
from serve.services.nutrients import find_food
from serve.services.privacy import consent_history

# Identifier systems of TrayLens' own codes (a deployment may map them to its own URIs).
FOOD_SYSTEM = "urn:traylens:food-id"
NUTRIENT_SYSTEM = "urn:traylens:nutrient"
USER_SYSTEM = "urn:traylens:user-id"
EXTERNAL_REF_SYSTEM = "urn:traylens:external-ref"
ANALYSIS_SYSTEM = "urn:traylens:analysis-id"
PAIR_SYSTEM = "urn:traylens:pair-id"
UCUM = "http://unitsofmeasure.org"
UCUM_CODES = {"kcal": "kcal", "g": "g", "mg": "mg", "μg": "ug", "μg RAE": "ug"}
# consumedItem.type (example binding edible-substance-type): SNOMED CT 255620007 Foods
FOOD_TYPE = {"coding": [{"system": "http://snomed.info/sct", "code": "255620007",
                         "display": "Foods"}]}
MEAL_NOTES = {
    "photo": "one photo: everything on it is counted as eaten",
    "before_after": "before/after photos: eaten = served - left (leftovers: notConsumed)",
    "before_only": "before photo without an after photo: counted as eaten in full",
    "manual": "logged by hand (foods and grams, no photo): counted as eaten",
}

CSV_COLUMNS = (
    "analysis_id", "captured_at", "meal_state", "pair_id", "kiosk_id", "menu_id",
    "item_position", "item_id", "food_id", "name_ko", "name_en", "label", "grams",
    "grams_low", "grams_high", "grams_source", "provenance", "identified_by", "confidence",
    "needs_review", "corrected_at", "original_food_id", "original_grams",
    *(n.key for n in NUTRIENTS),
)


def _analyses(session: Session, user: User) -> tuple[list[Analysis], list[MealPair]]:
    """The person's analyses (and the after photos of their pairs) and their pairs."""
    pairs = list(session.scalars(select(MealPair).where(MealPair.user_id == user.id)))
    after_ids = [p.after_analysis_id for p in pairs if p.after_analysis_id]
    query = select(Analysis).where(or_(Analysis.user_id == user.id, Analysis.id.in_(after_ids)))
    return list(session.scalars(query.order_by(Analysis.captured_at, Analysis.id))), pairs


def _food(food_id: str, grams: float) -> dict[str, Any]:
    """A food amount with its names."""
    food = find_food(food_id)
    return {"food_id": food_id, "name_ko": food.name_ko if food else None,
            "name_en": food.name_en if food else None, "grams": grams}


def _meal(log: MealLog, pairs: dict[str, MealPair]) -> dict[str, Any]:
    """A diary meal with names and its eaten nutrients."""
    pair = pairs.get(log.pair_id) if log.pair_id else None
    eaten = meal_nutrients([(f.food_id, f.grams) for f in log.foods])
    return {
        "analysis_id": log.analysis_id, "pair_id": log.pair_id,
        "after_analysis_id": pair.after_analysis_id if pair else None,
        "captured_at": as_utc(log.captured_at), "kind": log.kind,
        "eaten": [_food(f.food_id, f.grams) for f in log.foods],
        "leftovers": [_food(f.food_id, f.grams) for f in log.leftovers],
        "served_g": round(log.served_g, 1), "leftover_g": round(log.leftover_g, 1),
        "unidentified_g": round(log.unidentified_g, 1),
        "no_food_found": log.no_food_found,
        "nutrients": {k: None if v is None else round(v, 2) for k, v in eaten.totals.items()},
        "incomplete_nutrients": list(eaten.incomplete),
    }


def user_export(session: Session, user: User) -> UserExport:
    """Everything held about the person: user, consent history, analyses, meals."""
    analyses, pairs = _analyses(session, user)
    pair_of = {a: p.id for p in pairs for a in (p.before_analysis_id, p.after_analysis_id) if a}
    meals: list[MealLog] = []
    if analyses:
        dates = [as_utc(a.captured_at).date() for a in analyses]
        # every meal: one UTC day of margin on each side covers any local day boundary
        meals, _ = user_meals(session, user, min(dates) - dt.timedelta(days=1),
                              max(dates) + dt.timedelta(days=1), ZoneInfo("UTC"))
    by_id = {p.id: p for p in pairs}
    return UserExport.model_validate({
        "exported_at": utcnow(),
        "user": UserPublic.model_validate(user),
        "consent_history": consent_history(session, user),
        "analyses": [analysis_payload(a, pair_id=pair_of.get(a.id)) for a in analyses],
        "meals": [_meal(m, by_id) for m in meals],
        "corrections": correction_history(session, [a.id for a in analyses]),
    }, from_attributes=True)


def _cell(value: Any) -> Any:
    """A CSV cell: empty for None, ISO for times."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def export_csv(export: UserExport) -> str:
    """One row per item of every analysis (an analysis without items: one row, item columns
    empty); the columns are CSV_COLUMNS, documented in docs/API.md."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for a in export.analyses:
        meal = [a.id, a.captured_at, a.meal_state, a.pair_id, a.kiosk_id, a.menu_id]
        if not a.items:
            writer.writerow([_cell(v) for v in meal] + [""] * (len(CSV_COLUMNS) - len(meal)))
        for item in a.items:
            grams = item.grams
            original = item.original or {}
            nutrients = item.nutrients or {}
            row = [*meal, item.position, item.id, item.food_id, item.names.ko, item.names.en,
                   item.label, grams.value if grams else None, grams.low if grams else None,
                   grams.high if grams else None, grams.source if grams else None,
                   item.provenance.item, item.identified_by, item.confidence,
                   item.needs_review, item.corrected_at, original.get("food_id"),
                   original.get("grams"), *(nutrients.get(n.key) for n in NUTRIENTS)]
            writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def _urn(ident: str) -> str:
    """A bundle-local fullUrl for a TrayLens id (hex uuid4; others hashed to a uuid5)."""
    try:
        return uuid.UUID(ident).urn
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"urn:traylens:{ident}").urn


def _grams(value: float) -> dict[str, Any]:
    """A UCUM quantity in grams."""
    return {"value": value, "unit": "g", "system": UCUM, "code": "g"}


def _product(food_id: str | None, name_ko: str | None, name_en: str | None) -> dict[str, Any]:
    """nutritionProduct as a CodeableReference.concept: the TrayLens food id and name."""
    if food_id is None:
        return {"concept": {"text": "unidentified food"}}
    display = name_en or name_ko or food_id
    return {"concept": {"coding": [{"system": FOOD_SYSTEM, "code": food_id,
                                    "display": display}],
                        "text": name_ko or display}}


def _patient(user: UserPublic) -> dict[str, Any]:
    """The person as a Patient: TrayLens id, external reference, sex, birth year."""
    identifiers = [{"system": USER_SYSTEM, "value": user.id}]
    if user.external_ref:
        identifiers.append({"system": EXTERNAL_REF_SYSTEM, "value": user.external_ref})
    patient: dict[str, Any] = {"resourceType": "Patient", "id": user.id,
                               "identifier": identifiers}
    if user.display_name:
        patient["name"] = [{"text": user.display_name}]
    if user.sex:
        patient["gender"] = user.sex
    if user.birth_year:
        patient["birthDate"] = f"{user.birth_year:04d}"
    return patient


def _intake(meal: Any, subject: dict[str, Any], recorded: str | None) -> dict[str, Any] | None:
    """One meal as a NutritionIntake (None for a meal with nothing on it to report)."""
    items: list[dict[str, Any]] = [
        {"type": FOOD_TYPE, "nutritionProduct": _product(f.food_id, f.name_ko, f.name_en),
         "amount": _grams(f.grams)} for f in meal.eaten]
    if meal.unidentified_g > 0:
        items.append({"type": FOOD_TYPE, "nutritionProduct": _product(None, None, None),
                      "amount": _grams(meal.unidentified_g)})
    items += [{"type": FOOD_TYPE, "nutritionProduct": _product(f.food_id, f.name_ko, f.name_en),
               "amount": _grams(f.grams), "notConsumed": True,
               "notConsumedReason": {"text": "left on the tray (after photo)"}}
              for f in meal.leftovers]
    if not items:
        return None
    labels = [{"nutrient": {"concept": {"coding": [{"system": NUTRIENT_SYSTEM, "code": n.key,
                                                    "display": n.name_en}]}},
               "amount": {"value": amount, "unit": n.unit, "system": UCUM,
                          "code": UCUM_CODES[n.unit]}}
              for n in NUTRIENTS if (amount := meal.nutrients.get(n.key)) is not None]
    identifiers = [{"system": ANALYSIS_SYSTEM, "value": meal.analysis_id}]
    if meal.pair_id:
        identifiers.append({"system": PAIR_SYSTEM, "value": meal.pair_id})
    notes = [MEAL_NOTES[meal.kind]]
    if meal.incomplete_nutrients:
        notes.append("nutrients lacking for some food (totals are lower bounds): "
                     + ", ".join(meal.incomplete_nutrients))
    intake: dict[str, Any] = {
        "resourceType": "NutritionIntake", "id": meal.analysis_id, "identifier": identifiers,
        "status": "completed", "subject": subject,
        "occurrenceDateTime": as_utc(meal.captured_at).isoformat(),
        "consumedItem": items, "note": [{"text": t} for t in notes],
    }
    if recorded:
        intake["recorded"] = recorded
    if labels:
        intake["ingredientLabel"] = labels
    return intake


def fhir_bundle(export: UserExport) -> dict[str, Any]:
    """A FHIR R5 Bundle (collection): the Patient, then one NutritionIntake per meal."""
    user = export.user
    patient_url = _urn(user.id)
    subject = {"reference": patient_url,
               "identifier": {"system": USER_SYSTEM, "value": user.id}}
    created = {a.id: a.created_at for a in export.analyses}
    entries = [{"fullUrl": patient_url, "resource": _patient(user)}]
    for meal in export.meals:
        intake = _intake(meal, subject, created.get(meal.analysis_id))
        if intake is not None:
            entries.append({"fullUrl": _urn(meal.analysis_id), "resource": intake})
    return {"resourceType": "Bundle", "type": "collection",
            "timestamp": as_utc(export.exported_at).isoformat(), "entry": entries}


def export_fhir(export: UserExport) -> str:
    """The Bundle as JSON, after fhir.resources (R5) validated every resource in it."""
    from fhir.resources.bundle import Bundle  # imported on use: a large package

    bundle = fhir_bundle(export)
    Bundle.model_validate(bundle)  # a ValidationError here is our bug: answered as a 500
    return json.dumps(bundle, ensure_ascii=False)
