{#-
  Generic data tests of dbt_utils, kept here as local macros because packages from the dbt hub
  cannot be fetched on this project's machines. Same names, arguments and semantics as dbt_utils
  (1.x), so moving to the package is a rename to `dbt_utils.<name>` in the yml files and nothing
  else; documented in macros/generic_tests.yml. Each returns the failing rows (dbt counts them).
-#}

{#- dbt_utils.accepted_range: rows where `column_name` is below min_value or above max_value
    (`inclusive=false` excludes the bounds). Nulls pass. Unlike dbt_utils, a test with neither bound
    is refused when the project is parsed instead of silently passing. -#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}
    {%- if min_value is none and max_value is none -%}
        {{ exceptions.raise_compiler_error("accepted_range on column '" ~ column_name ~ "' needs min_value or max_value (or both)") }}
    {%- endif -%}
    select *
    from {{ model }}
    where 1 = 2
    {%- if min_value is not none %}
        or not {{ column_name }} {{ '>=' if inclusive else '>' }} {{ min_value }}
    {%- endif %}
    {%- if max_value is not none %}
        or not {{ column_name }} {{ '<=' if inclusive else '<' }} {{ max_value }}
    {%- endif %}
{% endtest %}

{#- dbt_utils.unique_combination_of_columns: combinations of `combination_of_columns` that occur more
    than once, with their count. `quote_columns=true` quotes each name (reserved words, mixed case). -#}
{% test unique_combination_of_columns(model, combination_of_columns, quote_columns=false) %}
    {%- if combination_of_columns is string or not combination_of_columns -%}
        {{ exceptions.raise_compiler_error("unique_combination_of_columns needs combination_of_columns as a list of columns, got " ~ combination_of_columns) }}
    {%- endif -%}
    {%- set columns = [] -%}
    {%- for column in combination_of_columns -%}
        {%- do columns.append(adapter.quote(column) if quote_columns else column) -%}
    {%- endfor -%}
    {%- set columns_csv = columns | join(', ') -%}
    select {{ columns_csv }}, count(*) as occurrences
    from {{ model }}
    group by {{ columns_csv }}
    having count(*) > 1
{% endtest %}

{#- dbt_utils.expression_is_true: rows where the SQL boolean `expression` is false, over the model's
    rows, or, as a column test, with `column_name` prefixed (`expression: '>= 0'`). As in dbt_utils, a
    row where it is null passes. -#}
{% test expression_is_true(model, expression, column_name=none) %}
    select *
    from {{ model }}
    {%- if column_name is none %}
    where not ({{ expression }})
    {%- else %}
    where not ({{ column_name }} {{ expression }})
    {%- endif %}
{% endtest %}
