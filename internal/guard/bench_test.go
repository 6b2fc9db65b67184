package guard

import (
	"encoding/json"
	"strings"
	"testing"
)

// typicalRows is about a kilobyte of what a CRM tool returns: customers,
// orders and notes, as JSON text.
var typicalRows = func() string {
	rows := []map[string]any{
		{"id": "C-1001", "tenant_id": "acme", "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+1 415 555 0101", "tier": "platinum", "created_at": "2023-02-14T09:30:00Z"},
		{"id": "O-5001", "customer_id": "C-1001", "status": "delivered", "amount_cents": 129900, "currency": "USD", "placed_at": "2024-09-01T10:00:00Z", "updated_at": "2024-09-04T17:00:00Z"},
		{"id": "O-5002", "customer_id": "C-1001", "status": "shipped", "amount_cents": 45900, "currency": "USD", "placed_at": "2024-10-12T09:15:00Z", "updated_at": "2024-10-13T08:00:00Z"},
		{"customer_id": "C-1001", "author": "j.smith", "body": "Prefers email over phone. Renewal due in March.", "created_at": "2024-09-06T10:00:00Z"},
		{"customer_id": "C-1002", "author": "j.smith", "body": "Asked about volume discounts for Q1. Key account; escalate delivery issues to the account manager.", "created_at": "2024-10-31T09:00:00Z"},
		{"id": "T-77", "subject": "Refund status", "body": "When will the refund for O-5005 reach my card? Tracking 1Z999AA10123456784.", "status": "closed", "priority": "normal"},
	}
	b, _ := json.Marshal(rows)
	return string(b)
}()

func benchText(b *testing.B, r *Redactor, s string) {
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		r.Text(s)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(float64(len(s))/1024), "ns/KB")
}

func BenchmarkText(b *testing.B) {
	b.Run("rows", func(b *testing.B) { benchText(b, NewRedactor(Options{}), typicalRows) })
	b.Run("rows/emails+phones", func(b *testing.B) { benchText(b, NewRedactor(Options{Emails: true, Phones: true}), typicalRows) })
	withSecret := strings.Replace(typicalRows, "Renewal due in March.", "Renewal due in March. api_key=sk_test_4eC39HqLyjWDarjtT1zdp7dc card 4111 1111 1111 1111", 1)
	b.Run("rows-with-secrets", func(b *testing.B) { benchText(b, NewRedactor(Options{}), withSecret) })
	big := strings.Repeat(typicalRows+"\n", 64)
	b.Run("64KB", func(b *testing.B) { benchText(b, NewRedactor(Options{}), big) })
}

func benchInspect(b *testing.B, s string) {
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		Inspect(s)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(float64(len(s))/1024), "ns/KB")
}

func BenchmarkInspect(b *testing.B) {
	b.Run("rows", func(b *testing.B) { benchInspect(b, typicalRows) })
	b.Run("rows-with-injection", func(b *testing.B) {
		benchInspect(b, strings.Replace(typicalRows, "Renewal due in March.", "Renewal due in March.\u200b "+demoNote, 1))
	})
	b.Run("64KB", func(b *testing.B) { benchInspect(b, strings.Repeat(typicalRows+"\n", 64)) })
}

func BenchmarkValue(b *testing.B) {
	var v any
	if err := json.Unmarshal([]byte(typicalRows), &v); err != nil {
		b.Fatal(err)
	}
	r := NewRedactor(Options{})
	b.SetBytes(int64(len(typicalRows)))
	for b.Loop() {
		r.Value(v, nil)
	}
}
