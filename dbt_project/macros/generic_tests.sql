{#- Rows where `column_name` is outside [min_value, max_value] (either bound optional; nulls pass). -#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}
    {%- if min_value is none and max_value is none -%}
        {{ exceptions.raise_compiler_error("accepted_range on " ~ column_name ~ " needs min_value or max_value") }}
    {%- endif -%}
    select *
    from {{ model }}
    where {{ column_name }} is not null
      and not (
        {%- if min_value is not none %} {{ column_name }} {{ '>=' if inclusive else '>' }} {{ min_value }}{% endif %}
        {%- if min_value is not none and max_value is not none %} and{% endif %}
        {%- if max_value is not none %} {{ column_name }} {{ '<=' if inclusive else '<' }} {{ max_value }}{% endif %}
      )
{% endtest %}

{#- Combinations of `combination_of_columns` that occur more than once. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    select {{ combination_of_columns | join(', ') }}, count(*) as occurrences
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1
{% endtest %}
