"""Forms of the Filters and Promotions pages: they parse the input; feeds.services checks it."""

from django import forms

from feeds.models import SavedFilter
from feeds.services import MAX_DESCRIPTION_LENGTH, MAX_NAME_LENGTH, MAX_PROMOTION_NAME_LENGTH
from models_app.models import Campaign

DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


class SavedFilterForm(forms.Form):
    name = forms.CharField(
        max_length=MAX_NAME_LENGTH + 20,
        widget=forms.TextInput(attrs={"placeholder": "in-stock-shoes", "autocomplete": "off"}),
        help_text="Lowercase letters, digits, hyphens and underscores; requests use this name.",
    )
    description = forms.CharField(
        max_length=MAX_DESCRIPTION_LENGTH + 50, required=False, label="Description (optional)"
    )
    expression = forms.CharField(
        widget=forms.Textarea(
            attrs={
                "rows": 5,
                "spellcheck": "false",
                "class": "code",
                "placeholder": "EXCLUDE ItemID WHERE Items.in_stock = false\n| INCLUDE ItemID "
                "WHERE Items.category IN ($CATEGORIES)",
            }
        ),
        max_length=10_000,
    )


class DateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%dT%H:%M", **kwargs)


class PromotionForm(forms.Form):
    SHARE, POSITIONS = "share", "positions"

    name = forms.CharField(
        max_length=MAX_PROMOTION_NAME_LENGTH + 20,
        widget=forms.TextInput(attrs={"placeholder": "Summer sale", "autocomplete": "off"}),
    )
    filter = forms.ModelChoiceField(
        queryset=SavedFilter.objects.none(),
        label="Saved filter",
        empty_label="– pick a filter –",
        error_messages={"required": "Pick the saved filter that selects the promoted items."},
    )
    mode = forms.ChoiceField(
        choices=[(SHARE, "A share of the slots"), (POSITIONS, "Fixed positions")],
        widget=forms.RadioSelect,
        initial=SHARE,
        label="Placement",
    )
    share_percent = forms.FloatField(
        required=False,
        label="Share of slots (%)",
        widget=forms.NumberInput(attrs={"step": "any", "min": "0", "max": "50"}),
        help_text="More than 0% and at most 50%: 20% puts 2 promoted items in a list of 10.",
        error_messages={"invalid": "Enter the share as a number of percent, e.g. 20."},
    )
    positions = forms.CharField(
        required=False,
        label="Positions",
        widget=forms.TextInput(attrs={"placeholder": "1, 5, 10"}),
        help_text="1 is the first slot; separate positions with commas.",
    )
    campaign = forms.ModelChoiceField(
        queryset=Campaign.objects.none(),
        required=False,
        label="Campaign (optional)",
        empty_label="– every campaign –",
    )
    starts_at = forms.DateTimeField(
        required=False,
        label="Starts (optional)",
        widget=DateTimeInput(),
        input_formats=DATETIME_FORMATS,
        error_messages={"invalid": "Enter a date and time, e.g. 2026-06-01 09:00."},
    )
    ends_at = forms.DateTimeField(
        required=False,
        label="Ends (optional)",
        widget=DateTimeInput(),
        input_formats=DATETIME_FORMATS,
        error_messages={"invalid": "Enter a date and time, e.g. 2026-06-30 23:59."},
    )
    reason = forms.CharField(
        required=False,
        max_length=250,
        label="Reason shown with the items (optional)",
        widget=forms.TextInput(attrs={"placeholder": "promoted: Summer sale"}),
    )

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["filter"].queryset = SavedFilter.objects.filter(project=project)
        self.fields["campaign"].queryset = Campaign.objects.filter(project=project).order_by("name")

    def share(self):
        percent = self.cleaned_data.get("share_percent")
        return None if percent is None else percent / 100.0

    def positions_text(self):
        if self.cleaned_data.get("mode") != self.POSITIONS:
            return ""
        return self.cleaned_data.get("positions", "")
