package rules

import (
	"fmt"
	"reflect"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"
	"github.com/shopspring/decimal"

	"github.com/paysentry/fraud-detector/internal/payment"
)

// activation gives the rules the variables of one Input. It makes a variable's value when a rule
// first reads it, from the Input's fields, and keeps it for the other rules: nothing is made for
// a variable no rule reads. One is used by one Eval at a time (Set keeps them in a pool).
type activation struct {
	in *Input

	vals   [numVars]ref.Val // the values made so far, by index
	amount decimalVal       // payment.amount's value

	lists map[string]*listVal // by variable name: lists.<name>
}

var _ interpreter.Activation = (*activation)(nil)

func newActivation(lists []ListSpec) *activation {
	a := &activation{lists: make(map[string]*listVal, len(lists))}
	for _, l := range lists {
		a.lists[nsLists+"."+l.Name] = &listVal{name: l.Name, act: a}
	}
	return a
}

// reset makes a resolve in's variables; nil forgets the last Input.
func (a *activation) reset(in *Input) {
	a.in = in
	a.vals = [numVars]ref.Val{}
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// ResolveName implements interpreter.Activation: name is a variable's qualified name, such as
// payment.amount, as the checker resolved it.
func (a *activation) ResolveName(name string) (any, bool) {
	i := varIndex(name)
	if i < 0 {
		if l, ok := a.lists[name]; ok {
			return l, true
		}
		return nil, false
	}
	if v := a.vals[i]; v != nil {
		return v, true
	}
	v := a.value(i)
	a.vals[i] = v
	return v, true
}

// The variables of payment, card and model, by index.
const (
	varPaymentID = iota
	varPaymentCardID
	varPaymentBIN
	varPaymentAmount
	varPaymentCurrency
	varPaymentCountry
	varPaymentMerchantID
	varPaymentMerchantCategory
	varPaymentChannel
	varPaymentDeviceID
	varPaymentIP
	varPaymentTimestamp
	varCardKnown
	varCardWindowCount
	varCardWindowStart
	varCardCount1h
	varCardCount24h
	varCardCount7d
	varCardCount30d
	varCardSum1h
	varCardSum24h
	varCardSum7d
	varCardSum30d
	varCardNewCountry
	varCardNewMerchant
	varCardNewDevice
	varCardSecondsSincePrevious
	varModelScore
	varModelScored
	varModelVersion
	numVars
)

// varIndex is the index of the variable named name, -1 if there is none (a list, or nothing).
func varIndex(name string) int {
	switch name {
	case "payment.id":
		return varPaymentID
	case "payment.card_id":
		return varPaymentCardID
	case "payment.bin":
		return varPaymentBIN
	case "payment.amount":
		return varPaymentAmount
	case "payment.currency":
		return varPaymentCurrency
	case "payment.country":
		return varPaymentCountry
	case "payment.merchant_id":
		return varPaymentMerchantID
	case "payment.merchant_category":
		return varPaymentMerchantCategory
	case "payment.channel":
		return varPaymentChannel
	case "payment.device_id":
		return varPaymentDeviceID
	case "payment.ip":
		return varPaymentIP
	case "payment.timestamp":
		return varPaymentTimestamp
	case "card.known":
		return varCardKnown
	case "card.window_count":
		return varCardWindowCount
	case "card.window_start":
		return varCardWindowStart
	case "card.count_1h":
		return varCardCount1h
	case "card.count_24h":
		return varCardCount24h
	case "card.count_7d":
		return varCardCount7d
	case "card.count_30d":
		return varCardCount30d
	case "card.sum_1h":
		return varCardSum1h
	case "card.sum_24h":
		return varCardSum24h
	case "card.sum_7d":
		return varCardSum7d
	case "card.sum_30d":
		return varCardSum30d
	case "card.new_country":
		return varCardNewCountry
	case "card.new_merchant":
		return varCardNewMerchant
	case "card.new_device":
		return varCardNewDevice
	case "card.seconds_since_previous":
		return varCardSecondsSincePrevious
	case "model.score":
		return varModelScore
	case "model.scored":
		return varModelScored
	case "model.version":
		return varModelVersion
	}
	return -1
}

// value makes the value of variable i. It is made of what stringVar, intVar, doubleVar, boolVar,
// amountVar and timeVar give, which the rules evaluated without CEL (comparisons with a constant,
// membership tests, details) read too.
func (a *activation) value(i int) ref.Val {
	switch varKind(i) {
	case kindString:
		return types.String(stringVar(a.in, i))
	case kindInt:
		return types.Int(intVar(a.in, i))
	case kindDouble:
		return types.Double(doubleVar(a.in, i))
	case kindBool:
		return types.Bool(boolVar(a.in, i))
	case kindDecimal:
		a.amount.set(amountVar(a.in))
		return &a.amount
	case kindTime:
		return types.Timestamp{Time: timeVar(a.in, i)}
	}
	return types.NewErr("no variable %d", i)
}

// The kinds of the variables, by their type.
const (
	kindNone = iota // no variable
	kindString
	kindInt
	kindDouble
	kindBool
	kindDecimal
	kindTime
)

// varKind is the kind of variable i: kindInt for an int variable, and so on; kindNone for no
// variable.
func varKind(i int) int {
	switch i {
	case varPaymentID, varPaymentCardID, varPaymentBIN, varPaymentCurrency, varPaymentCountry,
		varPaymentMerchantID, varPaymentMerchantCategory, varPaymentChannel, varPaymentDeviceID,
		varPaymentIP, varModelVersion:
		return kindString
	case varCardWindowCount, varCardCount1h, varCardCount24h, varCardCount7d, varCardCount30d,
		varCardSecondsSincePrevious:
		return kindInt
	case varCardSum1h, varCardSum24h, varCardSum7d, varCardSum30d, varModelScore:
		return kindDouble
	case varCardKnown, varCardNewCountry, varCardNewMerchant, varCardNewDevice, varModelScored:
		return kindBool
	case varPaymentAmount:
		return kindDecimal
	case varPaymentTimestamp, varCardWindowStart:
		return kindTime
	}
	return kindNone
}

// cardKnown says whether in has the card's state: false for nil, and for a late or ahead event.
func cardKnown(in *Input) bool {
	return in != nil && in.State != nil && !in.State.Late && !in.State.Ahead
}

// intVar is the value of int variable i for in (nil or not): the card's count, or 0 when its
// state is not known; its seconds since the previous payment, or -1.
func intVar(in *Input, i int) int64 {
	if !cardKnown(in) {
		if i == varCardSecondsSincePrevious {
			return -1
		}
		return 0
	}
	s := in.State
	switch i {
	case varCardWindowCount:
		return s.Count
	case varCardCount1h:
		return s.Count1h
	case varCardCount24h:
		return s.Count24h
	case varCardCount7d:
		return s.Count7d
	case varCardCount30d:
		return s.Count30d
	case varCardSecondsSincePrevious:
		return s.SincePrevious
	}
	return 0
}

// doubleVar is the value of double variable i for in (nil or not): the model's score, 0 when it
// did not score; the card's sums, 0 when its state is not known.
func doubleVar(in *Input, i int) float64 {
	if i == varModelScore {
		if in == nil || !in.Scored {
			return 0
		}
		return in.Score
	}
	if !cardKnown(in) {
		return 0
	}
	s := in.State
	switch i {
	case varCardSum1h:
		return s.Sum1h
	case varCardSum24h:
		return s.Sum24h
	case varCardSum7d:
		return s.Sum7d
	case varCardSum30d:
		return s.Sum30d
	}
	return 0
}

// boolVar is the value of bool variable i for in (nil or not): whether the model scored; whether
// the card's state is known, and its flags, false when it is not.
func boolVar(in *Input, i int) bool {
	if i == varModelScored {
		return in != nil && in.Scored
	}
	if !cardKnown(in) {
		return false
	}
	s := in.State
	switch i {
	case varCardKnown:
		return true
	case varCardNewCountry:
		return s.NewCountry
	case varCardNewMerchant:
		return s.NewMerchant
	case varCardNewDevice:
		return s.NewDevice
	}
	return false
}

// amountVar is payment.amount for in (nil or not): 0 when in has no payment.
func amountVar(in *Input) decimal.Decimal {
	if in == nil || in.Payment == nil {
		return decimal.Decimal{}
	}
	return in.Payment.Amount
}

// paymentString is p's string variable i; ok false when variable i is none.
func paymentString(p *payment.Payment, i int) (s string, ok bool) {
	switch i {
	case varPaymentID:
		return p.ID, true
	case varPaymentCardID:
		return p.CardID, true
	case varPaymentBIN:
		return bin(p.CardMasked), true
	case varPaymentCurrency:
		return p.Currency, true
	case varPaymentCountry:
		return p.Country, true
	case varPaymentMerchantID:
		return p.MerchantID, true
	case varPaymentMerchantCategory:
		return p.MerchantCategory, true
	case varPaymentChannel:
		return p.Channel, true
	case varPaymentDeviceID:
		return p.DeviceID, true
	case varPaymentIP:
		return p.IP, true
	}
	return "", false
}

// stringVar is the value of string variable i for in (nil or not): "" for a payment's field
// when in has no payment, for the model's version when in is nil.
func stringVar(in *Input, i int) string {
	if in == nil {
		return ""
	}
	if i == varModelVersion {
		return in.ModelVersion
	}
	if in.Payment == nil {
		return ""
	}
	s, _ := paymentString(in.Payment, i)
	return s
}

// timeVar is the value of timestamp variable i for in (nil or not), in UTC: the payment's time,
// the zero time when in has no payment; the start of the card's window, the zero time when its
// state is not known.
func timeVar(in *Input, i int) time.Time {
	switch i {
	case varPaymentTimestamp:
		if in != nil && in.Payment != nil {
			return in.Payment.Time.UTC()
		}
	case varCardWindowStart:
		if cardKnown(in) {
			return in.State.Window.UTC()
		}
	}
	return time.Time{}.UTC()
}

// bin is the card number's first 6 digits from its masked form, "" without a card number.
func bin(masked string) string {
	if len(masked) < 6 {
		return ""
	}
	for i := range 6 {
		if masked[i] < '0' || masked[i] > '9' {
			return ""
		}
	}
	return masked[:6]
}

// listVal is lists.<name> at run time: a map(string, bool) to the checker, of which the
// evaluation only asks `value in lists.name`, answered by the Input's Lists.
type listVal struct {
	name string
	act  *activation
}

var (
	_ ref.Val          = (*listVal)(nil)
	_ traits.Container = (*listVal)(nil)
)

// Contains implements traits.Container.
func (l *listVal) Contains(v ref.Val) ref.Val {
	s, ok := v.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(v)
	}
	in := l.act.in
	if in == nil || in.Lists == nil {
		return types.False
	}
	return types.Bool(in.Lists.Contains(l.name, string(s)))
}

// ConvertToNative implements ref.Val.
func (l *listVal) ConvertToNative(typeDesc reflect.Type) (any, error) {
	return nil, fmt.Errorf("list %s: its items cannot be read, only tested with `in`", l.name)
}

// ConvertToType implements ref.Val.
func (l *listVal) ConvertToType(typeVal ref.Type) ref.Val {
	if typeVal == types.TypeType {
		return listType
	}
	return types.NewErr("list %s: its items cannot be read, only tested with `in`", l.name)
}

// Equal implements ref.Val.
func (l *listVal) Equal(other ref.Val) ref.Val { return types.Bool(other == ref.Val(l)) }

// Type implements ref.Val.
func (l *listVal) Type() ref.Type { return listType }

// Value implements ref.Val.
func (l *listVal) Value() any { return l.name }
