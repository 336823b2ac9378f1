// A small strict JSON reader for the engine header (header-only, no dependencies).
//
// Grammar: RFC 8259, plus the three non-finite number spellings Python's json.dumps writes by
// default (NaN, Infinity, -Infinity). Rejected: trailing commas, comments, single quotes,
// unescaped control characters in strings, lone surrogates, duplicate object keys, anything after
// the top-level value, nesting deeper than 64. \uXXXX escapes (surrogate pairs included) are
// decoded to UTF-8. Numbers without fraction or exponent that fit in int64 keep their exact value.
//
// Errors: json::ParseError (with the byte offset) while parsing; json::TypeError from the
// accessors when a value has another type or a key is missing (the message names the key).
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bertqa {
namespace json {

class ParseError : public std::runtime_error {
public:
    ParseError(const std::string& what, size_t offset)
        : std::runtime_error(what + " at byte " + std::to_string(offset)), offset_(offset) {}
    size_t offset() const { return offset_; }

private:
    size_t offset_;
};

class TypeError : public std::runtime_error {
public:
    explicit TypeError(const std::string& what) : std::runtime_error(what) {}
};

class Value {
public:
    enum class Type { Null, Bool, Number, String, Array, Object };
    using Array = std::vector<Value>;
    using Object = std::map<std::string, Value, std::less<>>;

    Value() = default;
    static Value boolean(bool b) { Value v; v.type_ = Type::Bool; v.bool_ = b; return v; }
    static Value number(double d) { Value v; v.type_ = Type::Number; v.num_ = d; return v; }
    static Value integer(int64_t i) {
        Value v; v.type_ = Type::Number; v.num_ = static_cast<double>(i); v.int_ = i; v.is_int_ = true; return v;
    }
    static Value string(std::string s) { Value v; v.type_ = Type::String; v.str_ = std::move(s); return v; }
    static Value array(Array a) {
        Value v; v.type_ = Type::Array; v.arr_ = std::make_shared<Array>(std::move(a)); return v;
    }
    static Value object(Object o) {
        Value v; v.type_ = Type::Object; v.obj_ = std::make_shared<Object>(std::move(o)); return v;
    }

    Type type() const { return type_; }
    bool is_null() const { return type_ == Type::Null; }
    bool is_bool() const { return type_ == Type::Bool; }
    bool is_number() const { return type_ == Type::Number; }
    bool is_integer() const { return type_ == Type::Number && is_int_; }
    bool is_string() const { return type_ == Type::String; }
    bool is_array() const { return type_ == Type::Array; }
    bool is_object() const { return type_ == Type::Object; }

    bool as_bool(std::string_view what = "value") const {
        if (type_ != Type::Bool) fail(what, "true or false");
        return bool_;
    }
    double as_double(std::string_view what = "value") const {
        if (type_ != Type::Number) fail(what, "a number");
        return num_;
    }
    int64_t as_int(std::string_view what = "value") const {
        if (type_ != Type::Number || !is_int_) fail(what, "an integer");
        return int_;
    }
    const std::string& as_string(std::string_view what = "value") const {
        if (type_ != Type::String) fail(what, "a string");
        return str_;
    }
    const Array& as_array(std::string_view what = "value") const {
        if (type_ != Type::Array) fail(what, "an array");
        return *arr_;
    }
    const Object& as_object(std::string_view what = "value") const {
        if (type_ != Type::Object) fail(what, "an object");
        return *obj_;
    }
    // Object member access: find() returns nullptr when absent, at() throws TypeError.
    const Value* find(std::string_view key) const {
        const Object& o = as_object();
        auto it = o.find(key);
        return it == o.end() ? nullptr : &it->second;
    }
    const Value& at(std::string_view key) const {
        const Value* v = find(key);
        if (!v) throw TypeError("missing field '" + std::string(key) + "'");
        return *v;
    }
    // Shorthands: obj.get_int("hidden_size") == obj.at("hidden_size").as_int("hidden_size").
    int64_t get_int(std::string_view key) const { return at(key).as_int(key); }
    double get_double(std::string_view key) const { return at(key).as_double(key); }
    const std::string& get_string(std::string_view key) const { return at(key).as_string(key); }
    bool get_bool(std::string_view key) const { return at(key).as_bool(key); }
    const Array& get_array(std::string_view key) const { return at(key).as_array(key); }

private:
    [[noreturn]] static void fail(std::string_view what, const char* expected) {
        throw TypeError("'" + std::string(what) + "' must be " + expected);
    }

    Type type_ = Type::Null;
    bool bool_ = false;
    bool is_int_ = false;
    double num_ = 0.0;
    int64_t int_ = 0;
    std::string str_;
    std::shared_ptr<Array> arr_;
    std::shared_ptr<Object> obj_;
};

namespace detail {

class Parser {
public:
    explicit Parser(std::string_view text) : s_(text) {}

    Value parse_document() {
        skip_ws();
        Value v = parse_value(0);
        skip_ws();
        if (pos_ != s_.size()) error("unexpected text after the JSON value");
        return v;
    }

private:
    static constexpr int kMaxDepth = 64;

    [[noreturn]] void error(const std::string& what) const { throw ParseError(what, pos_); }

    void skip_ws() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
            ++pos_;
    }
    bool consume(std::string_view word) {
        if (s_.substr(pos_, word.size()) == word) {
            pos_ += word.size();
            return true;
        }
        return false;
    }
    char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }

    Value parse_value(int depth) {
        if (depth > kMaxDepth) error("JSON nested deeper than 64 levels");
        if (pos_ >= s_.size()) error("unexpected end of JSON");
        const char c = s_[pos_];
        switch (c) {
            case '{': return parse_object(depth);
            case '[': return parse_array(depth);
            case '"': return Value::string(parse_string());
            case 't': if (consume("true")) return Value::boolean(true); break;
            case 'f': if (consume("false")) return Value::boolean(false); break;
            case 'n': if (consume("null")) return Value(); break;
            case 'N': if (consume("NaN")) return Value::number(std::numeric_limits<double>::quiet_NaN()); break;
            case 'I': if (consume("Infinity")) return Value::number(std::numeric_limits<double>::infinity()); break;
            default:
                if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
        }
        error(std::string("unexpected character '") + c + "'");
    }

    Value parse_object(int depth) {
        ++pos_;  // '{'
        Value::Object obj;
        skip_ws();
        if (peek() == '}') { ++pos_; return Value::object(std::move(obj)); }
        for (;;) {
            skip_ws();
            if (peek() != '"') error("expected a string key in object");
            std::string key = parse_string();
            skip_ws();
            if (peek() != ':') error("expected ':' after object key");
            ++pos_;
            skip_ws();
            Value v = parse_value(depth + 1);
            if (!obj.emplace(std::move(key), std::move(v)).second) error("duplicate object key");
            skip_ws();
            if (peek() == ',') { ++pos_; continue; }
            if (peek() == '}') { ++pos_; return Value::object(std::move(obj)); }
            error("expected ',' or '}' in object");
        }
    }

    Value parse_array(int depth) {
        ++pos_;  // '['
        Value::Array arr;
        skip_ws();
        if (peek() == ']') { ++pos_; return Value::array(std::move(arr)); }
        for (;;) {
            skip_ws();
            arr.push_back(parse_value(depth + 1));
            skip_ws();
            if (peek() == ',') { ++pos_; continue; }
            if (peek() == ']') { ++pos_; return Value::array(std::move(arr)); }
            error("expected ',' or ']' in array");
        }
    }

    unsigned hex4() {
        if (pos_ + 4 > s_.size()) error("truncated \\u escape");
        unsigned v = 0;
        for (int i = 0; i < 4; ++i) {
            const char c = s_[pos_++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= unsigned(c - '0');
            else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
            else error("bad hex digit in \\u escape");
        }
        return v;
    }

    static void append_utf8(std::string& out, unsigned cp) {
        if (cp < 0x80) {
            out += char(cp);
        } else if (cp < 0x800) {
            out += char(0xC0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += char(0xE0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3F));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        }
    }

    std::string parse_string() {
        ++pos_;  // opening quote
        std::string out;
        for (;;) {
            if (pos_ >= s_.size()) error("unterminated string");
            const unsigned char c = static_cast<unsigned char>(s_[pos_]);
            if (c == '"') { ++pos_; return out; }
            if (c < 0x20) error("unescaped control character in string");
            if (c != '\\') {
                // Copy a run of plain bytes at once (UTF-8 passes through unchanged).
                const size_t start = pos_;
                while (pos_ < s_.size()) {
                    const unsigned char d = static_cast<unsigned char>(s_[pos_]);
                    if (d == '"' || d == '\\' || d < 0x20) break;
                    ++pos_;
                }
                out.append(s_.data() + start, pos_ - start);
                continue;
            }
            ++pos_;
            if (pos_ >= s_.size()) error("unterminated escape");
            const char e = s_[pos_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned cp = hex4();
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (!(consume("\\u"))) error("lone high surrogate in \\u escape");
                        const unsigned lo = hex4();
                        if (lo < 0xDC00 || lo > 0xDFFF) error("bad low surrogate in \\u escape");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        error("lone low surrogate in \\u escape");
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: error(std::string("bad escape '\\") + e + "'");
            }
        }
    }

    Value parse_number() {
        const size_t start = pos_;
        bool integral = true;
        if (peek() == '-') {
            ++pos_;
            if (consume("Infinity")) return Value::number(-std::numeric_limits<double>::infinity());
        }
        if (peek() == '0') {
            ++pos_;
        } else if (peek() >= '1' && peek() <= '9') {
            while (peek() >= '0' && peek() <= '9') ++pos_;
        } else {
            error("bad number");
        }
        if (peek() == '.') {
            integral = false;
            ++pos_;
            if (!(peek() >= '0' && peek() <= '9')) error("bad number: digits must follow '.'");
            while (peek() >= '0' && peek() <= '9') ++pos_;
        }
        if (peek() == 'e' || peek() == 'E') {
            integral = false;
            ++pos_;
            if (peek() == '+' || peek() == '-') ++pos_;
            if (!(peek() >= '0' && peek() <= '9')) error("bad number: digits must follow the exponent");
            while (peek() >= '0' && peek() <= '9') ++pos_;
        }
        const std::string text(s_.substr(start, pos_ - start));
        if (integral) {
            errno = 0;
            char* end = nullptr;
            const long long v = std::strtoll(text.c_str(), &end, 10);
            if (errno == 0 && end == text.c_str() + text.size()) return Value::integer(v);
        }
        return Value::number(std::strtod(text.c_str(), nullptr));
    }

    std::string_view s_;
    size_t pos_ = 0;
};

}  // namespace detail

inline Value parse(std::string_view text) { return detail::Parser(text).parse_document(); }

}  // namespace json
}  // namespace bertqa
