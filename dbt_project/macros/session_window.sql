{#-
  The inclusive session window of this run, validated as ISO dates (so they are safe to inline), or
  none when the run has no window: the `start_date` / `end_date` vars (a hand-run `dbt build --vars`),
  else WEALTH_DBT_START_DATE / WEALTH_DBT_END_DATE (what Dagster's marts_dbt sets). The environment
  is read only while executing: dbt re-parses the whole project when its vars change, and the files
  that read an env_var when it changes, so a window read while parsing would cost every new
  session's run a parse.
-#}
{% macro session_window() -%}
    {%- set start = var('start_date', none) -%}
    {%- set end = var('end_date', none) -%}
    {%- if start is none and end is none and execute -%}
        {%- set start = env_var('WEALTH_DBT_START_DATE', '') or none -%}
        {%- set end = env_var('WEALTH_DBT_END_DATE', '') or none -%}
    {%- endif -%}
    {%- if start is none and end is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if start is none or end is none -%}
        {{ exceptions.raise_compiler_error("vars start_date and end_date go together; got start_date=" ~ start ~ ", end_date=" ~ end) }}
    {%- endif -%}
    {%- set parsed = [] -%}
    {%- for name, value in [('start_date', start), ('end_date', end)] -%}
        {%- set text = value | string -%}
        {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', text) -%}
            {{ exceptions.raise_compiler_error("var " ~ name ~ " must be a date YYYY-MM-DD, got " ~ text) }}
        {%- endif -%}
        {%- do parsed.append(modules.datetime.date(text[0:4] | int, text[5:7] | int, text[8:10] | int)) -%}
    {%- endfor -%}
    {%- if parsed[0] > parsed[1] -%}
        {{ exceptions.raise_compiler_error("start_date " ~ start ~ " is after end_date " ~ end) }}
    {%- endif -%}
    {{ return({'start': parsed[0].isoformat(), 'end': parsed[1].isoformat()}) }}
{%- endmacro %}

{#- SQL predicate restricting `column` to the run's window (true when the run has none). -#}
{% macro in_session_window(column) -%}
    {%- set window = session_window() -%}
    {%- if window is none -%}
        true
    {%- else -%}
        {{ column }} between '{{ window.start }}'::date and '{{ window.end }}'::date
    {%- endif -%}
{%- endmacro %}

{#- Pre-hook of windowed incremental models: delete the whole window first, so rows that left the
    sources inside the window leave the mart too (delete+insert alone deletes matching keys only). -#}
{% macro delete_session_window(column='session_date') -%}
    {%- if is_incremental() and session_window() is not none -%}
        delete from {{ this }} where {{ in_session_window(column) }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
